"""Does each function's IAM policy allow every AWS call the function makes? Decided as IAM decides.

The project's template checks (tests/unit/test_template_security.py) prove least privilege; nothing
proved sufficiency, and a missing permission would only show in a real account. This module closes
that gap with the calls recorded in the sandbox (call_recording.py):

1. `requests_for(call)`: a recorded call -> the IAM requests AWS authorizes for it (action, resource
   ARN, condition context). Operations and IAM actions do not always match one to one (HeadObject is
   s3:GetObject, ListObjectVersions is s3:ListBucketVersions, TransactWriteItems is one action per item,
   CopyObject reads one object and writes another, tagging on create and passing a role are actions of
   their own, publishing to a topic encrypted with a customer managed key uses the key); each mapping
   below cites the AWS documentation it follows. An operation without a mapping raises UnmappedCall:
   the check never passes a call it does not understand.
2. `evaluate(request, statements)`: the identity-policy part of IAM's evaluation logic: an explicit Deny
   wins, otherwise an Allow whose Action/NotAction, Resource/NotResource (wildcards `*` and `?`) and
   Condition all match, otherwise an implicit deny. Conditions: the String/Arn operators (with IfExists),
   on the keys the request's context names. A condition on a key the mapping does not provide, a set
   operator (ForAnyValue/ForAllValues) or a policy variable raises UnsupportedPolicy instead of guessing.
3. `function_policies(rendered, resolve, managed)`: the statements of each function's role in the template
   rendered by SAM (what CloudFormation deploys), intrinsics resolved with the sandbox's physical names,
   AWS managed policies from the documents moto ships.

Out of scope, said plainly: resource-based policies (the bucket policy, key policies), permission
boundaries, SCPs and session policies (the stack uses none for its functions), and the permissions a
service needs on the caller's behalf that AWS documents only per service (e.g. Application Auto Scaling's
calls to SageMaker and CloudWatch when it registers a variant).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

# --------------------------------------------------------------------------------------------- requests


class UnmappedCall(Exception):
    """A recorded call this module cannot turn into IAM requests (unknown operation or missing parameter)."""


class UnsupportedPolicy(Exception):
    """A policy uses something the evaluator cannot decide faithfully (unknown condition key or operator)."""


@dataclass(frozen=True)
class Request:
    """One authorization IAM makes: `action` on `resource`, with the condition keys the request carries
    (`context`: every key the mapping knows for this action; None when the request leaves it out)."""

    action: str
    resource: str
    context: Mapping[str, str | None] = field(default_factory=dict)
    why: str = ""


@dataclass(frozen=True)
class Env:
    """Where the calls were made, and what the mapping needs to know about the stack's resources."""

    region: str
    account: str
    topic_keys: Mapping[str, str] = field(default_factory=dict)  # topic ARN -> customer managed KMS key ARN


def _param(call: Mapping[str, Any], name: str) -> Any:
    params = call.get("params", {})
    if name not in params:
        raise UnmappedCall(f"{call['service']}.{call['operation']}: parameter {name} was not recorded")
    return params[name]


# S3 ---------------------------------------------------------------------------------------------
# Actions per operation: https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
# and the "Permissions" section of each operation in the S3 API reference (HeadObject is s3:GetObject;
# a VersionId makes it s3:GetObjectVersion; ListObjectVersions is s3:ListBucketVersions; CopyObject and
# UploadPartCopy read the source with s3:GetObject and write the destination with s3:PutObject; the
# multipart operations are s3:PutObject, AbortMultipartUpload its own action). ListBucket and
# ListBucketVersions carry the s3:prefix condition key (the Prefix parameter).
_S3_OBJECT_WRITE = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}


def _s3_object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _copy_source(value: Any) -> tuple[str, str, str | None]:
    """(bucket, key, version id) of CopySource: "bucket/key[?versionId=v]" (URL-encoded) or a dict."""
    if isinstance(value, Mapping):
        return str(value["Bucket"]), str(value["Key"]), value.get("VersionId")
    text = str(value).lstrip("/")
    path, _, query = text.partition("?")
    bucket, _, key = unquote(path).partition("/")
    version = None
    for part in query.split("&"):
        name, _, found = part.partition("=")
        if name == "versionId":
            version = unquote(found)
    return bucket, key, version


def _s3(call: Mapping[str, Any], env: Env) -> list[Request]:
    operation, params = call["operation"], call.get("params", {})
    bucket = str(_param(call, "Bucket"))
    if operation in ("GetObject", "HeadObject"):
        versioned = "VersionId" in params
        action = "s3:GetObjectVersion" if versioned else "s3:GetObject"
        return [Request(action, _s3_object(bucket, _param(call, "Key")), why=f"{operation} reads the object")]
    if operation in _S3_OBJECT_WRITE:
        return [Request("s3:PutObject", _s3_object(bucket, _param(call, "Key")), why=f"{operation} writes")]
    if operation == "AbortMultipartUpload":
        return [Request("s3:AbortMultipartUpload", _s3_object(bucket, _param(call, "Key")))]
    if operation in ("DeleteObject",):
        action = "s3:DeleteObjectVersion" if "VersionId" in params else "s3:DeleteObject"
        return [Request(action, _s3_object(bucket, _param(call, "Key")))]
    if operation in ("CopyObject", "UploadPartCopy"):
        source_bucket, source_key, version = _copy_source(_param(call, "CopySource"))
        read = "s3:GetObjectVersion" if version else "s3:GetObject"
        return [
            Request(read, _s3_object(source_bucket, source_key), why=f"{operation} reads the source"),
            Request("s3:PutObject", _s3_object(bucket, _param(call, "Key")), why=f"{operation} writes the copy"),
        ]
    if operation in ("ListObjects", "ListObjectsV2", "ListObjectVersions"):
        action = "s3:ListBucketVersions" if operation == "ListObjectVersions" else "s3:ListBucket"
        prefix = params.get("Prefix")
        return [Request(action, f"arn:aws:s3:::{bucket}", {"s3:prefix": prefix}, why=f"{operation}")]
    raise UnmappedCall(f"s3.{operation}: no IAM mapping")


# DynamoDB ----------------------------------------------------------------------------------------
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html: a
# transaction is authorized per item (PutItem, UpdateItem, DeleteItem, ConditionCheckItem; GetItem for
# TransactGetItems). BatchGetItem / BatchWriteItem are actions of their own, on each table named.
# Query and Scan with IndexName are authorized on the index ARN (table/<t>/index/<i>).
_DYNAMODB_SINGLE = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "DescribeTable"}
_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


def _dynamodb(call: Mapping[str, Any], env: Env) -> list[Request]:
    operation, params = call["operation"], call.get("params", {})

    def table(name: str) -> str:
        return f"arn:aws:dynamodb:{env.region}:{env.account}:table/{name}"

    if operation in _DYNAMODB_SINGLE:
        resource = table(str(_param(call, "TableName")))
        if operation in ("Query", "Scan") and "IndexName" in params:
            resource += f"/index/{params['IndexName']}"
        return [Request(f"dynamodb:{operation}", resource)]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        requests = []
        for item in _param(call, "Items"):
            action = _TRANSACT_ACTIONS.get(item["kind"])
            if action is None:
                raise UnmappedCall(f"dynamodb.{operation}: item kind {item['kind']} has no IAM mapping")
            requests.append(Request(action, table(item["TableName"]), why=f"{operation} item {item['kind']}"))
        return requests
    if operation in ("BatchGetItem", "BatchWriteItem"):
        tables = sorted({item["TableName"] for item in _param(call, "Items")})
        return [Request(f"dynamodb:{operation}", table(name)) for name in tables]
    raise UnmappedCall(f"dynamodb.{operation}: no IAM mapping")


# SageMaker ---------------------------------------------------------------------------------------
# Resource types and their ARNs: https://docs.aws.amazon.com/service-authorization/latest/reference/
# list_amazonsagemaker.html (names in ARNs are lower case). Passing ExecutionRoleArn / RoleArn needs
# iam:PassRole on that role (the API reference of CreateModel / CreateTrainingJob); tags given on create
# need sagemaker:AddTags on the new resource ("Provide permissions for tagging SageMaker AI resources").
# UpdateModelPackage carries sagemaker:ModelApprovalStatus. List* actions have no resource type ("*").
_SAGEMAKER_BY_NAME: dict[str, tuple[str, str]] = {  # operation -> (resource type, name parameter)
    "CreateModel": ("model", "ModelName"),
    "DeleteModel": ("model", "ModelName"),
    "DescribeModel": ("model", "ModelName"),
    "CreateEndpointConfig": ("endpoint-config", "EndpointConfigName"),
    "DeleteEndpointConfig": ("endpoint-config", "EndpointConfigName"),
    "DescribeEndpointConfig": ("endpoint-config", "EndpointConfigName"),
    "CreateEndpoint": ("endpoint", "EndpointName"),
    "UpdateEndpoint": ("endpoint", "EndpointName"),
    "DeleteEndpoint": ("endpoint", "EndpointName"),
    "DescribeEndpoint": ("endpoint", "EndpointName"),
    "UpdateEndpointWeightsAndCapacities": ("endpoint", "EndpointName"),
    "CreateTransformJob": ("transform-job", "TransformJobName"),
    "DescribeTransformJob": ("transform-job", "TransformJobName"),
    "StopTransformJob": ("transform-job", "TransformJobName"),
    "CreateTrainingJob": ("training-job", "TrainingJobName"),
    "DescribeTrainingJob": ("training-job", "TrainingJobName"),
    "StopTrainingJob": ("training-job", "TrainingJobName"),
    "DescribeModelPackageGroup": ("model-package-group", "ModelPackageGroupName"),
    "DescribeModelPackage": ("model-package", "ModelPackageName"),
}
_SAGEMAKER_NO_RESOURCE = {
    "ListModelPackages",
    "ListModelPackageGroups",
    "ListTransformJobs",
    "ListTrainingJobs",
    "ListEndpoints",
    "ListEndpointConfigs",
    "ListModels",
}
_PASSED_ROLE = {"CreateModel": "ExecutionRoleArn", "CreateTrainingJob": "RoleArn"}


def _sagemaker_arn(env: Env, resource_type: str, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:aws:sagemaker:{env.region}:{env.account}:{resource_type}/{name.lower()}"


def _sagemaker(call: Mapping[str, Any], env: Env) -> list[Request]:
    operation, params = call["operation"], call.get("params", {})
    action = f"sagemaker:{operation}"
    if operation in _SAGEMAKER_NO_RESOURCE:
        return [Request(action, "*")]
    requests: list[Request]
    if operation in _SAGEMAKER_BY_NAME:
        resource_type, parameter = _SAGEMAKER_BY_NAME[operation]
        resource = _sagemaker_arn(env, resource_type, str(_param(call, parameter)))
        requests = [Request(action, resource)]
    elif operation in ("ListTags", "AddTags", "DeleteTags"):
        resource = str(_param(call, "ResourceArn"))
        requests = [Request(action, resource)]
    elif operation == "UpdateModelPackage":
        resource = str(_param(call, "ModelPackageArn"))
        context = {"sagemaker:ModelApprovalStatus": params.get("ModelApprovalStatus")}
        requests = [Request(action, resource, context)]
    elif operation == "CreateModelPackage":
        # A version's ARN is model-package/<group>/<version>; the version is not known before it exists.
        group = str(_param(call, "ModelPackageGroupName"))
        resource = _sagemaker_arn(env, "model-package", f"{group.rsplit('/', 1)[-1]}/<new version>")
        context = {"sagemaker:ModelApprovalStatus": params.get("ModelApprovalStatus")}
        requests = [Request(action, resource, context)]
    else:
        raise UnmappedCall(f"sagemaker.{operation}: no IAM mapping")
    if operation.startswith("Create") and params.get("Tags"):
        requests.append(Request("sagemaker:AddTags", resource, why=f"{operation} with Tags (tag on create)"))
    if operation in _PASSED_ROLE and params.get(_PASSED_ROLE[operation]):
        role = str(params[_PASSED_ROLE[operation]])
        passed = {"iam:PassedToService": "sagemaker.amazonaws.com"}
        requests.append(Request("iam:PassRole", role, passed, why=f"{operation} passes {_PASSED_ROLE[operation]}"))
    return requests


# SNS, SQS ----------------------------------------------------------------------------------------
# Publishing to a topic encrypted with a customer managed key needs kms:GenerateDataKey and kms:Decrypt
# on that key (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html). SQS batch operations
# are authorized as their single-message actions (DeleteMessageBatch is sqs:DeleteMessage, ...).
_SQS_ACTIONS = {
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "SendMessage": "sqs:SendMessage",
    "SendMessageBatch": "sqs:SendMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
}


def _sns(call: Mapping[str, Any], env: Env) -> list[Request]:
    if call["operation"] != "Publish":
        raise UnmappedCall(f"sns.{call['operation']}: no IAM mapping")
    params = call.get("params", {})
    topic = str(params.get("TopicArn") or _param(call, "TargetArn"))
    requests = [Request("sns:Publish", topic)]
    key = env.topic_keys.get(topic)
    if key is not None:
        why = "the topic is encrypted with a customer managed key"
        requests += [Request("kms:GenerateDataKey", key, why=why), Request("kms:Decrypt", key, why=why)]
    return requests


def queue_arn(url: str, region: str) -> str:
    """arn:aws:sqs:<region>:<account>:<name> of a queue URL (https://host/<account>/<name>)."""
    parts = [p for p in urlparse(url).path.split("/") if p]
    if len(parts) != 2:
        raise UnmappedCall(f"not a queue URL: {url}")
    return f"arn:aws:sqs:{region}:{parts[0]}:{parts[1]}"


def _sqs(call: Mapping[str, Any], env: Env) -> list[Request]:
    action = _SQS_ACTIONS.get(call["operation"])
    if action is None:
        raise UnmappedCall(f"sqs.{call['operation']}: no IAM mapping")
    return [Request(action, queue_arn(str(_param(call, "QueueUrl")), env.region))]


# CloudWatch --------------------------------------------------------------------------------------
# Alarm ARNs arn:aws:cloudwatch:<region>:<account>:alarm:<name>. Tags on PutMetricAlarm need
# cloudwatch:TagResource (the API reference of PutMetricAlarm, Tags). Metric reads and PutMetricData
# have no resource type; PutMetricData carries cloudwatch:namespace.


def _cloudwatch(call: Mapping[str, Any], env: Env) -> list[Request]:
    operation, params = call["operation"], call.get("params", {})

    def alarm(name: str) -> str:
        return f"arn:aws:cloudwatch:{env.region}:{env.account}:alarm:{name}"

    if operation == "PutMetricAlarm":
        resource = alarm(str(_param(call, "AlarmName")))
        requests = [Request("cloudwatch:PutMetricAlarm", resource)]
        if params.get("Tags"):
            requests.append(Request("cloudwatch:TagResource", resource, why="PutMetricAlarm with Tags"))
        return requests
    if operation in ("DeleteAlarms", "DescribeAlarms"):
        if "AlarmNames" not in params:
            raise UnmappedCall(f"cloudwatch.{operation} without AlarmNames: the alarms it touches are not named")
        return [Request(f"cloudwatch:{operation}", alarm(name)) for name in params["AlarmNames"]]
    if operation == "SetAlarmState":
        return [Request("cloudwatch:SetAlarmState", alarm(str(_param(call, "AlarmName"))))]
    if operation == "PutMetricData":
        return [Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": params.get("Namespace")})]
    if operation in ("GetMetricData", "GetMetricStatistics", "ListMetrics"):
        return [Request(f"cloudwatch:{operation}", "*")]
    raise UnmappedCall(f"cloudwatch.{operation}: no IAM mapping")


# Application Auto Scaling ------------------------------------------------------------------------
# Service prefix application-autoscaling; scalable targets are arn:...:scalable-target/<id>, an id AWS
# generates (not the ResourceId), so only a policy naming `scalable-target/*` can match it here.
# The keys application-autoscaling:service-namespace / :scalable-dimension come from the request.
# RegisterScalableTarget creates the service's service-linked role if it is missing, which needs
# iam:CreateServiceLinkedRole on it (Application Auto Scaling user guide, "Service-linked roles").
_AAS_TARGETED = {"RegisterScalableTarget", "DeregisterScalableTarget", "PutScalingPolicy", "DeleteScalingPolicy"}
_AAS_NO_RESOURCE = {"DescribeScalableTargets", "DescribeScalingPolicies", "DescribeScalingActivities"}
_AAS_SERVICE_LINKED_ROLES = {
    "sagemaker": (
        "sagemaker.application-autoscaling.amazonaws.com",
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
    )
}


def _application_autoscaling(call: Mapping[str, Any], env: Env) -> list[Request]:
    operation, params = call["operation"], call.get("params", {})
    namespace = params.get("ServiceNamespace")
    context = {
        "application-autoscaling:service-namespace": namespace,
        "application-autoscaling:scalable-dimension": params.get("ScalableDimension"),
    }
    action = f"application-autoscaling:{operation}"
    if operation in _AAS_NO_RESOURCE:
        return [Request(action, "*", context)]
    if operation not in _AAS_TARGETED:
        raise UnmappedCall(f"application-autoscaling.{operation}: no IAM mapping")
    target = f"arn:aws:application-autoscaling:{env.region}:{env.account}:scalable-target/<id of {namespace}:"
    target += f"{_param(call, 'ResourceId')}>"
    requests = [Request(action, target, context)]
    if operation == "RegisterScalableTarget":
        if namespace not in _AAS_SERVICE_LINKED_ROLES:
            raise UnmappedCall(f"RegisterScalableTarget for {namespace}: its service-linked role is not mapped")
        principal, role = _AAS_SERVICE_LINKED_ROLES[str(namespace)]
        requests.append(
            Request(
                "iam:CreateServiceLinkedRole",
                f"arn:aws:iam::{env.account}:role/aws-service-role/{principal}/{role}",
                {"iam:AWSServiceName": principal},
                why="RegisterScalableTarget creates the service-linked role when it is missing",
            )
        )
    return requests


_SERVICES: dict[str, Callable[[Mapping[str, Any], Env], list[Request]]] = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "sagemaker": _sagemaker,
    "sns": _sns,
    "sqs": _sqs,
    "cloudwatch": _cloudwatch,
    "application-autoscaling": _application_autoscaling,
}


def requests_for(call: Mapping[str, Any], env: Env) -> list[Request]:
    """The IAM requests of one recorded call ({"service", "operation", "params"}); UnmappedCall if unknown."""
    mapper = _SERVICES.get(str(call["service"]))
    if mapper is None:
        raise UnmappedCall(f"{call['service']}.{call['operation']}: service without an IAM mapping")
    return mapper(call, env)


# --------------------------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Statement:
    """One statement of an identity policy, where it comes from (`source`) and its Sid."""

    source: str
    sid: str
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    condition: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.source}#{self.sid}"


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(str(v) for v in (value if isinstance(value, list) else [value]))


def parse_statements(document: Mapping[str, Any], source: str) -> list[Statement]:
    """The statements of a policy document (intrinsics already resolved)."""
    raw = document.get("Statement", [])
    statements = []
    for index, statement in enumerate(raw if isinstance(raw, list) else [raw]):
        effect = str(statement.get("Effect"))
        if effect not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"{source}: statement {index} has Effect {effect!r}")
        for element in ("Action", "Resource"):
            if (element in statement) == (f"Not{element}" in statement):
                raise UnsupportedPolicy(f"{source}: statement {index} needs exactly one of {element}/Not{element}")
        statements.append(
            Statement(
                source=source,
                sid=str(statement.get("Sid", index)),
                effect=effect,
                actions=_strings(statement.get("Action")),
                not_actions=_strings(statement.get("NotAction")),
                resources=_strings(statement.get("Resource")),
                not_resources=_strings(statement.get("NotResource")),
                condition=statement.get("Condition") or {},
            )
        )
    return statements


# --------------------------------------------------------------------------------------------- evaluation


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcard matching: `*` any run of characters (including none), `?` exactly one."""
    if "${" in pattern:
        raise UnsupportedPolicy(f"policy variable in {pattern!r}")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def _action_matches(statement: Statement, action: str) -> bool:
    if statement.not_actions:
        return not any(wildcard_match(p, action, ignore_case=True) for p in statement.not_actions)
    return any(wildcard_match(p, action, ignore_case=True) for p in statement.actions)


def _resource_matches(statement: Statement, resource: str) -> bool:
    if statement.not_resources:
        return not any(wildcard_match(p, resource) for p in statement.not_resources)
    return any(wildcard_match(p, resource) for p in statement.resources)


_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {  # name -> (value test, negated)
    "StringEquals": (lambda pattern, value: pattern == value, False),
    "StringNotEquals": (lambda pattern, value: pattern == value, True),
    "StringEqualsIgnoreCase": (lambda pattern, value: pattern.lower() == value.lower(), False),
    "StringLike": (lambda pattern, value: wildcard_match(pattern, value), False),
    "StringNotLike": (lambda pattern, value: wildcard_match(pattern, value), True),
    "ArnEquals": (lambda pattern, value: pattern == value, False),
    "ArnLike": (lambda pattern, value: wildcard_match(pattern, value), False),
    "ArnNotEquals": (lambda pattern, value: pattern == value, True),
    "ArnNotLike": (lambda pattern, value: wildcard_match(pattern, value), True),
}


def _condition_holds(statement: Statement, request: Request) -> bool:
    """Every operator block and every key within it holds (values of a key: any of them)."""
    for operator, block in statement.condition.items():
        if ":" in operator:
            raise UnsupportedPolicy(f"{statement.name}: set operator {operator} is not evaluated")
        if_exists = operator.endswith("IfExists")
        base = operator.removesuffix("IfExists")
        if base not in _OPERATORS:
            raise UnsupportedPolicy(f"{statement.name}: condition operator {operator} is not evaluated")
        test, negated = _OPERATORS[base]
        for key, expected in block.items():
            known = {k.lower(): k for k in request.context}
            if key.lower() not in known:
                raise UnsupportedPolicy(
                    f"{statement.name}: condition key {key} is not known for {request.action} "
                    f"(known: {sorted(request.context) or 'none'})"
                )
            value = request.context[known[key.lower()]]
            if value is None:
                holds = if_exists or negated  # a missing key: only negated operators (and IfExists) match
            else:
                matched = any(test(str(pattern), value) for pattern in _strings(expected))
                holds = not matched if negated else matched
            if not holds:
                return False
    return True


@dataclass(frozen=True)
class Decision:
    request: Request
    allowed: bool
    decided_by: str  # the statement that allowed or denied, or "implicit deny"
    considered: tuple[str, ...]  # statements whose action matched, with why each did or did not apply


def evaluate(request: Request, statements: Iterable[Statement]) -> Decision:
    """IAM's identity-policy evaluation of one request: explicit Deny > Allow > implicit deny."""
    allowed_by: str | None = None
    denied_by: str | None = None
    considered = []
    for statement in statements:
        if not _action_matches(statement, request.action):
            continue
        if not _resource_matches(statement, request.resource):
            considered.append(f"{statement.name} ({statement.effect}): resource does not match")
            continue
        if not _condition_holds(statement, request):
            considered.append(f"{statement.name} ({statement.effect}): condition {json.dumps(statement.condition)}")
            continue
        considered.append(f"{statement.name} ({statement.effect}): applies")
        if statement.effect == "Deny":
            denied_by = denied_by or statement.name
        else:
            allowed_by = allowed_by or statement.name
    if denied_by is not None:
        return Decision(request, False, f"explicit deny by {denied_by}", tuple(considered))
    if allowed_by is not None:
        return Decision(request, True, allowed_by, tuple(considered))
    return Decision(request, False, "implicit deny", tuple(considered))


# --------------------------------------------------------------------------------------------- the template


def _logical_id(value: Any) -> str | None:
    """The logical id of `!GetAtt X.Arn` / `!Ref X`."""
    if isinstance(value, Mapping) and len(value) == 1:
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            attribute = value["Fn::GetAtt"]
            return str(attribute[0] if isinstance(attribute, list) else str(attribute).split(".", 1)[0])
    return None


def function_policies(
    rendered: Mapping[str, Any], resolve: Callable[[Any], Any], managed: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[Statement]]:
    """The statements of every Lambda function's role in `rendered` (the template as SAM renders it),
    intrinsics resolved by `resolve`, AWS managed policies from `managed` (name -> document), the template's own
    AWS::IAM::ManagedPolicy resources from their documents in `rendered`."""
    resources = rendered.get("Resources", {})
    policies: dict[str, list[Statement]] = {}
    for function, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        role_id = _logical_id(resource.get("Properties", {}).get("Role"))
        role = resources.get(role_id or "", {})
        if role.get("Type") != "AWS::IAM::Role":
            raise UnsupportedPolicy(f"{function}: its role is not an AWS::IAM::Role of the template")
        properties = role.get("Properties", {})
        statements: list[Statement] = []
        for policy in properties.get("Policies", []):
            document = resolve(policy["PolicyDocument"])
            statements += parse_statements(document, f"{role_id}/{policy['PolicyName']}")
        for attached in properties.get("ManagedPolicyArns", []):
            own = resources.get(_logical_id(attached) or "", {})
            if own.get("Type") == "AWS::IAM::ManagedPolicy":  # one of the template's own, by `!Ref`
                document = resolve(own.get("Properties", {})["PolicyDocument"])
                statements += parse_statements(document, f"{role_id}/{_logical_id(attached)}")
                continue
            arn = resolve(attached)
            name = str(arn).rsplit("/", 1)[-1]
            if ":iam::aws:policy/" not in str(arn) or name not in managed:
                raise UnsupportedPolicy(f"{function}: managed policy {arn} has no known document")
            statements += parse_statements(managed[name], f"{role_id}/{name}")
        if properties.get("PermissionsBoundary"):
            raise UnsupportedPolicy(f"{function}: permissions boundaries are not evaluated")
        policies[function] = statements
    return policies


def topic_keys(
    template: Mapping[str, Any], resolve: Callable[[Any], Any], key_arns: Mapping[str, str]
) -> dict[str, str]:
    """Topic ARN -> key ARN for the template's topics encrypted with one of its own keys (`key_arns`: key id,
    alias or ARN -> key ARN). An AWS managed key (alias/aws/...) needs no permission in the caller's policy."""
    found = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::SNS::Topic" or "KmsMasterKeyId" not in resource.get("Properties", {}):
            continue
        key = str(resolve(resource["Properties"]["KmsMasterKeyId"]))
        if key.startswith("alias/aws/"):
            continue
        if key not in key_arns:
            raise UnmappedCall(f"{logical_id}: cannot tell which key {key} is")
        found[str(resolve({"Ref": logical_id}))] = key_arns[key]
    return found


# --------------------------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class Finding:
    """A recorded call of a function that is not (or cannot be shown to be) allowed by its role."""

    function: str
    call: Mapping[str, Any]
    problem: str
    decision: Decision | None = None

    def describe(self) -> str:
        call = self.call
        head = f"{self.function}: {call['service']}.{call['operation']} ({call.get('source', 'function')})"
        if self.decision is None:
            return f"{head}: {self.problem}\n    params {json.dumps(call.get('params', {}), sort_keys=True)}"
        request = self.decision.request
        lines = [
            f"{head}: {self.problem}",
            f"    action   {request.action}" + (f"  ({request.why})" if request.why else ""),
            f"    resource {request.resource}",
            f"    context  {json.dumps(dict(request.context), sort_keys=True)}",
            f"    params   {json.dumps(call.get('params', {}), sort_keys=True)}",
            "    statements considered (action matched): " + ("none" if not self.decision.considered else ""),
        ]
        lines += [f"      - {line}" for line in self.decision.considered]
        return "\n".join(lines)


def check_calls(
    calls: Mapping[str, Iterable[Mapping[str, Any]]], policies: Mapping[str, list[Statement]], env: Env
) -> list[Finding]:
    """Every recorded call (by function) against its function's policy; what is not allowed, or cannot be
    decided, is a Finding (an unmapped operation or an unsupported policy is one too, never a pass)."""
    findings = []
    for function, recorded in calls.items():
        if function not in policies:
            findings += [Finding(function, call, "no policy found for this function") for call in recorded]
            continue
        for call in recorded:
            try:
                requests = requests_for(call, env)
                decisions = [evaluate(request, policies[function]) for request in requests]
            except (UnmappedCall, UnsupportedPolicy) as exc:
                findings.append(Finding(function, call, f"{type(exc).__name__}: {exc}"))
                continue
            findings += [Finding(function, call, d.decided_by.upper(), d) for d in decisions if not d.allowed]
    return findings


# --------------------------------------------------------------------------------------------- the sandbox's stack


def stack_policies(stack: Any) -> tuple[dict[str, list[Statement]], Env]:
    """The functions' policies and the Env of a provisioned sandbox stack (provision.Stack): template.yaml
    rendered by SAM (scripts/render_template.py, as CloudFormation would deploy it), resolved with the
    stack's physical names; AWS managed policies from the documents moto ships. Reads files; decides nothing."""
    import importlib.util

    from moto.iam.aws_managed_policies import aws_managed_policies_data

    from sagepilot_sandbox.stack.template import ACCOUNT_ID, REGION

    spec = importlib.util.spec_from_file_location("render_template", stack.root / "scripts" / "render_template.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(stack.root / "scripts" / "render_template.py")
    renderer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(renderer)
    template = renderer.load_sam_template(stack.root / "template.yaml")
    rendered = renderer.render(template)
    managed = {name: body["Document"] for name, body in json.loads(aws_managed_policies_data).items()}
    resolver = stack.resolver
    policies = function_policies(rendered, resolver.resolve, managed)
    key_arns: dict[str, str] = {}
    for (logical_id, attribute), value in resolver.attributes.items():
        if attribute == "KeyId":
            arn = resolver.attributes[(logical_id, "Arn")]
            key_arns.update({value: arn, arn: arn})
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::KMS::Alias" and logical_id in resolver.refs:
            target = str(resolver.resolve(resource["Properties"]["TargetKeyId"]))
            key_arns[resolver.refs[logical_id]] = key_arns[target]
    env = Env(REGION, ACCOUNT_ID, topic_keys(template, resolver.resolve, key_arns))
    return policies, env
