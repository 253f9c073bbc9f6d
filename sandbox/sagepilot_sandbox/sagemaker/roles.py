"""SageMaker acts as the execution role: what it reads and writes on a user's behalf is authorized by the
role's policies, decided by the project's IAM evaluator (`iam_check.evaluate`).

SageMaker reads model artifacts (`ModelDataUrl`, a `SAGEMAKER_SUBMIT_DIRECTORY` sourcedir.tar.gz), a
transform job's manifest and inputs, a training job's channels, and writes outputs, each as the role of
the model or job. The sandbox asks the same of the role's identity policies (inline and attached managed
ones, read from the sandbox's IAM): `s3:GetObject` on the object, `s3:ListBucket` on the bucket for a
prefix, `s3:PutObject` on what it writes. A refusal is an `AccessDenied` whose `reason` names the role,
the action and the resource; callers turn it into SageMaker's failure (an endpoint's or job's
`FailureReason`).

SageMaker also pulls the model's or job's image from ECR as the role (`check_image_pull`):
`ecr:GetAuthorizationToken` (which has no resource), then `ecr:BatchGetImage` and
`ecr:GetDownloadUrlForLayer` on the image's repository. An image that is not an ECR URI is not checked.

What is not evaluated, said plainly: bucket policies and other resource-based policies, permission
boundaries, SCPs, KMS key policies; `https://` model data (the sandbox serves none: it is refused as
unreadable); and a role the sandbox's IAM does not know (tests that run SageMaker alone create models with
roles they never created): SageMaker would refuse such a role when the model or job is created
(`api_rules` checks only the ARN's form), the sandbox does not check its permissions.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import unquote

from moto.iam.models import iam_backends

from sagepilot_sandbox.bus import DEFAULT_ACCOUNT
from sagepilot_sandbox.stack import iam_check


class AccessDenied(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def role_statements(role_arn: str, *, account: str = DEFAULT_ACCOUNT) -> list[iam_check.Statement] | None:
    """The identity-policy statements of the role, or None when the sandbox's IAM has no such role."""
    backend = iam_backends[account]["global"]
    role = next((r for r in backend.get_roles() if r.arn == role_arn), None)
    if role is None:
        return None
    sources = [(f"{role.name}/{name}", str(document)) for name, document in role.policies.items()]
    for arn, policy in role.managed_policies.items():
        sources.append((arn, str(next(v for v in policy.versions if v.is_default).document)))
    return list(_parsed(tuple(sources)))


@functools.lru_cache(maxsize=256)
def _parsed(sources: tuple[tuple[str, str], ...]) -> tuple[iam_check.Statement, ...]:
    """Statements of (source, document) pairs; cached, as SageMaker checks the same role for every object."""
    return tuple(s for source, text in sources for s in iam_check.parse_statements(_document(text), source))


def _document(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        document: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:
        document = json.loads(unquote(text))
    return document


def check(role_arn: str, action: str, resource: str, *, account: str = DEFAULT_ACCOUNT) -> None:
    """AccessDenied unless the role's policies allow `action` on `resource` (unknown roles: see above)."""
    statements = role_statements(role_arn, account=account)
    if statements is None:
        return
    decision = iam_check.evaluate(iam_check.Request(action, resource), statements)
    if not decision.allowed:
        raise AccessDenied(
            f"{role_arn} is not authorized to perform: {action} on resource: {resource} "
            f"because no identity-based policy allows the {action} action"
            if decision.decided_by == "implicit deny"
            else f"{role_arn} is not authorized to perform: {action} on resource: {resource} "
            f"with an explicit deny in an identity-based policy"
        )


def check_read(role_arn: str, bucket: str, key: str, *, account: str = DEFAULT_ACCOUNT) -> None:
    check(role_arn, "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}", account=account)


def check_list(role_arn: str, bucket: str, *, account: str = DEFAULT_ACCOUNT) -> None:
    check(role_arn, "s3:ListBucket", f"arn:aws:s3:::{bucket}", account=account)


def check_write(role_arn: str, bucket: str, key: str, *, account: str = DEFAULT_ACCOUNT) -> None:
    check(role_arn, "s3:PutObject", f"arn:aws:s3:::{bucket}/{key}", account=account)


ECR_IMAGE = re.compile(
    r"^(?P<registry>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9._/-]+?)(?:[:@].*)?$"
)


def ecr_repository(image: str) -> tuple[str, str] | None:
    """(registry id, repository ARN) of an ECR image URI; None for any other image."""
    found = ECR_IMAGE.match(image)
    if found is None:
        return None
    registry, region, repository = found.group("registry", "region", "repository")
    return registry, f"arn:aws:ecr:{region}:{registry}:repository/{repository}"


def check_image_pull(role_arn: str, image: str, *, account: str = DEFAULT_ACCOUNT) -> None:
    """AccessDenied unless the role may pull `image` from ECR (see the module docstring)."""
    found = ecr_repository(image)
    if found is None:
        return
    _, repository = found
    check(role_arn, "ecr:GetAuthorizationToken", "*", account=account)
    check(role_arn, "ecr:BatchGetImage", repository, account=account)
    check(role_arn, "ecr:GetDownloadUrlForLayer", repository, account=account)
