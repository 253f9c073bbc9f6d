"""Where images may come from: the stack's ImageRepositoriesAllowed, for training and for inference alike.

An image runs with the stack's SageMaker execution role, which reads and writes every group's data: only
repositories the operator allows may provide one, whether it trains (domain/training.py), serves an
endpoint (the rollout) or scores a batch (the transform jobs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase

# An ECR image URI: <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>(:<tag>|@sha256:<digest>)
IMAGE_URI = re.compile(
    r"^(?P<repository>[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+)"
    r"(:[\w.-]{1,128}|@sha256:[0-9a-f]{64})$"
)
# An allow-list entry: a repository, or a repository prefix ending in `*` (`<registry>/*` is the whole registry).
REPOSITORY_PATTERN = re.compile(r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/([a-z0-9._/-]*\*?)$")
# The stack parameter that sets the allow-list (named in every refusal, so that it says what to change).
PARAMETER = "ImageRepositoriesAllowed"


def image_allowed(image: str, allowed: Iterable[str]) -> bool:
    """An ECR image URI whose repository is one of `allowed` (entries may end in `*`: a prefix)."""
    match = IMAGE_URI.match(image)
    return match is not None and any(fnmatchcase(match.group("repository"), pattern) for pattern in allowed)


def images_not_allowed(images: Iterable[str], allowed: Iterable[str]) -> tuple[str, ...]:
    """The images of a model package version (its InferenceSpecification's containers) that may not run;
    a version naming no image at all cannot be checked, so it may not run either: ("(none)",)."""
    patterns = tuple(allowed)
    listed = tuple(images)
    if not listed:
        return ("(none)",)
    return tuple(image for image in listed if not image_allowed(image, patterns))


def not_allowed_reason(images: Iterable[str], allowed: Iterable[str]) -> str:
    """`inference image X is not in a repository ...`: what is wrong and which parameter allows it."""
    foreign = tuple(images)
    what = "inference image" if len(foreign) == 1 else "inference images"
    verb = "is" if len(foreign) == 1 else "are"
    return (
        f"{what} {', '.join(foreign)} {verb} not in a repository the stack's {PARAMETER} allows ({','.join(allowed)})"
    )
