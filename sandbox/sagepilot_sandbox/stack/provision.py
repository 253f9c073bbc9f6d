"""Create the stack's resources from template.yaml in the embedded AWS, as CloudFormation would.

Every resource type the template uses is created through the real AWS APIs (boto3 against moto), in
dependency order, with CloudFormation-like physical names (`<stack>-<LogicalId>`). Lambda functions
cannot run in moto without Docker, so their specification (code, handler, environment, event sources,
async settings) is returned for the sandbox's own runtime to invoke; each EventBridge rule that targets
a function is created with a delivery queue as its target instead, so EventBridge's own pattern matching
still decides what reaches the function.

SAM `Schedule` events create the EventBridge rule SAM would (`<stack>-<Function><Event>` unless `Name`
is given, with the ScheduleExpression, Description and state from `Enabled` or `State`) with the
function as its target; `ScheduleV2` events create an EventBridge Scheduler schedule (name
`<stack>-<Function><Event>` unless `Name`, group `GroupName` or default, `State`,
`FlexibleTimeWindow`, the function as target with `Input`). A ScheduleV2 event must give `Input`:
the Scheduler sends "a default notification" to a Lambda target without one, whose shape AWS does not
document. The sandbox's runtime fires both on its compressed clock (see runtime.py).

`AWS::CloudWatch::Alarm` resources are created with PutMetricAlarm (CloudFormation's property names
are the API's); an `AWS::Events::Rule` may have a ScheduleExpression instead of (or besides) an
EventPattern.
"""

from __future__ import annotations

import graphlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagepilot_sandbox.stack.template import (
    ACCOUNT_ID,
    REGION,
    Resolver,
    TemplateError,
    load_template,
    parameter_values,
    references,
    to_json,
)

ClientFactory = Callable[[str], Any]


@dataclass(frozen=True)
class SqsSource:
    queue_url: str
    queue_arn: str
    batch_size: int
    batching_window_seconds: float
    report_batch_item_failures: bool
    maximum_concurrency: int | None = None  # ScalingConfig.MaximumConcurrency: batches invoked at once


@dataclass(frozen=True)
class RuleDelivery:
    """An EventBridge rule whose target is the function: events arrive through this queue.

    For a SAM Schedule (or ScheduleV2) event, `schedule_expression` is set: nothing matches the rule,
    the runtime puts a `Scheduled Event` (or the ScheduleV2 `Input`) in the queue on its clock.
    """

    rule_name: str
    delivery_queue_url: str
    dead_letter_queue_arn: str | None
    schedule_expression: str | None = None
    rule_arn: str = ""
    input: str | None = None  # the target's Input: what the function receives instead of the event
    scheduler_group: str | None = None  # ScheduleV2: the EventBridge Scheduler group of the schedule


@dataclass
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    timeout: int
    environment: dict[str, str]
    layer_dirs: list[Path]
    sqs_sources: list[SqsSource] = field(default_factory=list)
    rule_deliveries: list[RuleDelivery] = field(default_factory=list)
    max_async_retries: int = 2
    on_failure_queue_arn: str | None = None
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions: its own pool, and its ceiling


@dataclass
class Stack:
    name: str
    root: Path
    parameters: dict[str, str]
    resolver: Resolver
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    physical: dict[str, str] = field(default_factory=dict)  # logical id -> Ref value

    def queue_url_for_arn(self, arn: str) -> str:
        name = arn.rsplit(":", 1)[1]
        for (logical_id, attribute), value in self.resolver.attributes.items():
            if attribute == "QueueName" and value == name:
                return self.resolver.refs[logical_id]
        raise KeyError(arn)


def _merge_globals(template: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    merged = dict(template.get("Globals", {}).get("Function", {}))
    for key, value in props.items():
        if key == "Environment" and "Environment" in merged:
            variables = {**merged["Environment"].get("Variables", {}), **value.get("Variables", {})}
            merged["Environment"] = {"Variables": variables}
        else:
            merged[key] = value
    return merged


def _implicit_parents(resources: Mapping[str, Any]) -> dict[str, str]:
    """SAM creates a rule per EventBridgeRule event, named <Function><Event>; map it to its function."""
    parents = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Serverless::Function":
            for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
                if event.get("Type") in ("EventBridgeRule", "Schedule", "ScheduleV2"):
                    parents[f"{logical_id}{event_name}"] = logical_id
    return parents


class Provisioner:
    def __init__(self, root: Path, client: ClientFactory, stack_name: str, overrides: Mapping[str, str]) -> None:
        self.root = root
        self.client = client
        self.template = load_template(root / "template.yaml")
        params = parameter_values(self.template, overrides)
        self.stack = Stack(stack_name, root, params, Resolver(self.template, stack_name, params))
        self.skipped_statements = 0
        self._layer_dirs: dict[str, Path] = {}

    @property
    def r(self) -> Resolver:
        return self.stack.resolver

    def provision(self) -> Stack:
        resources: dict[str, Any] = self.template["Resources"]
        parents = _implicit_parents(resources)
        graph: dict[str, set[str]] = {}
        for logical_id, resource in resources.items():
            deps = references({k: v for k, v in resource.items() if k != "Metadata"})
            deps = {parents.get(d, d) for d in deps} & set(resources)
            deps.discard(logical_id)
            graph[logical_id] = deps
        # Functions last-but-policies: a queue policy may name a rule that SAM creates with a function.
        for logical_id in graph:
            for dep in list(graph[logical_id]):
                if dep not in resources:
                    raise TemplateError(f"{logical_id} refers to unknown {dep}")
        for logical_id in graphlib.TopologicalSorter(graph).static_order():
            resource = resources[logical_id]
            if "Condition" in resource and not self.r.condition(resource["Condition"]):
                continue
            self._create(logical_id, resource)
        for name, output in self.template.get("Outputs", {}).items():
            self.stack.outputs[name] = str(self.r.resolve(output["Value"]))
        self.stack.physical = dict(self.r.refs)
        return self.stack

    # Resources ----------------------------------------------------------------------------------------
    def _physical(self, logical_id: str, limit: int = 64) -> str:
        return f"{self.stack.name}-{logical_id}"[:limit]

    def _create(self, logical_id: str, resource: dict[str, Any]) -> None:
        kind = resource["Type"]
        handler = {
            "AWS::S3::Bucket": self._bucket,
            "AWS::S3::BucketPolicy": self._bucket_policy,
            "AWS::DynamoDB::Table": self._table,
            "AWS::SNS::Topic": self._topic,
            "AWS::SQS::Queue": self._queue,
            "AWS::SQS::QueuePolicy": self._queue_policy,
            "AWS::Events::Rule": self._rule,
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::CloudWatch::Dashboard": self._dashboard,
            "AWS::KMS::Key": self._kms_key,
            "AWS::KMS::Alias": self._kms_alias,
            "AWS::IAM::Role": self._role,
            "AWS::IAM::ManagedPolicy": self._managed_policy,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::Serverless::LayerVersion": self._layer,
            "AWS::Serverless::Function": self._function,
        }.get(kind)
        if handler is None:
            raise TemplateError(f"the sandbox cannot create {logical_id} of type {kind}")
        props = resource.get("Properties", {})
        if kind == "AWS::Serverless::Function":
            props = _merge_globals(self.template, props)
        handler(logical_id, props if kind == "AWS::Serverless::Function" else self.r.resolve(props), resource)

    def _bucket(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        name = self._physical(logical_id, 63).lower()
        s3 = self.client("s3")
        s3.create_bucket(Bucket=name)
        if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if "BucketEncryption" in props:
            # CloudFormation spells the API's ApplyServerSideEncryptionByDefault without "Apply".
            rules = [
                {
                    ("ApplyServerSideEncryptionByDefault" if k == "ServerSideEncryptionByDefault" else k): v
                    for k, v in rule.items()
                }
                for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
        if props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        self.r.refs[logical_id] = name
        self.r.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"
        self.r.attributes[(logical_id, "DomainName")] = f"{name}.s3.amazonaws.com"

    def _bucket_policy(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        # The sandbox speaks plain HTTP on loopback, and moto enforces bucket policies: a TLS-only
        # statement would refuse every request, so it is the one statement left out here.
        document = dict(props["PolicyDocument"])
        document["Statement"] = [
            s for s in document["Statement"] if "aws:SecureTransport" not in json.dumps(s.get("Condition", {}))
        ]
        self.skipped_statements += len(props["PolicyDocument"]["Statement"]) - len(document["Statement"])
        if document["Statement"]:
            self.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=to_json(document))
        self.r.refs[logical_id] = props["Bucket"]

    def _table(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        name = self._physical(logical_id, 255)
        ddb = self.client("dynamodb")
        request: dict[str, Any] = {
            k: props[k]
            for k in ("AttributeDefinitions", "KeySchema", "BillingMode", "GlobalSecondaryIndexes")
            if k in props
        }
        if "SSESpecification" in props:  # CloudFormation's SSEEnabled is the API's Enabled
            request["SSESpecification"] = {"Enabled": bool(props["SSESpecification"].get("SSEEnabled"))}
        table = ddb.create_table(TableName=name, **request)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        self.r.refs[logical_id] = name
        self.r.attributes[(logical_id, "Arn")] = table["TableArn"]

    def _topic(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        name = props.get("TopicName") or self._physical(logical_id, 256)
        attributes = {"KmsMasterKeyId": props["KmsMasterKeyId"]} if "KmsMasterKeyId" in props else {}
        arn = self.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
        self.r.refs[logical_id] = arn
        self.r.attributes[(logical_id, "TopicName")] = name
        self.r.attributes[(logical_id, "TopicArn")] = arn

    def _queue(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        name = props.get("QueueName") or self._physical(logical_id, 80)
        attributes = {
            k: (to_json(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in props.items()
            if k != "QueueName" and k != "Tags"
        }
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self.r.refs[logical_id] = url
        self.r.attributes[(logical_id, "Arn")] = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"
        self.r.attributes[(logical_id, "QueueName")] = name
        self.r.attributes[(logical_id, "QueueUrl")] = url

    def _queue_policy(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        for url in props["Queues"]:
            self.client("sqs").set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": to_json(props["PolicyDocument"])}
            )
        self.r.refs[logical_id] = logical_id

    def _rule(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        name = props.get("Name") or self._physical(logical_id)
        events = self.client("events")
        request: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED")}
        request["Description"] = props.get("Description", "")
        if "EventPattern" in props:
            request["EventPattern"] = to_json(props["EventPattern"])
        if "ScheduleExpression" in props:
            request["ScheduleExpression"] = props["ScheduleExpression"]
        arn = events.put_rule(**request)["RuleArn"]
        if props.get("Targets"):
            events.put_targets(Rule=name, Targets=props["Targets"])
        self.r.refs[logical_id] = name
        self.r.attributes[(logical_id, "Arn")] = arn

    def _alarm(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        name = props.get("AlarmName") or self._physical(logical_id, 255)
        request = {k: v for k, v in props.items() if k not in ("AlarmName", "Tags")}
        for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if key in request:
                request[key] = int(request[key])
        if "Threshold" in request:
            request["Threshold"] = float(request["Threshold"])
        if "ActionsEnabled" in request and isinstance(request["ActionsEnabled"], str):
            request["ActionsEnabled"] = request["ActionsEnabled"].lower() == "true"
        self.client("cloudwatch").put_metric_alarm(AlarmName=name, **request, Tags=props.get("Tags", []))
        self.r.refs[logical_id] = name
        self.r.attributes[(logical_id, "Arn")] = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{name}"

    def _dashboard(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        name = props.get("DashboardName") or self._physical(logical_id, 255)
        self.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=props["DashboardBody"])
        self.r.refs[logical_id] = name

    def _kms_key(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        kms = self.client("kms")
        key = kms.create_key(Description=props.get("Description", ""), Policy=to_json(props["KeyPolicy"]))
        key_id = key["KeyMetadata"]["KeyId"]
        if props.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=key_id)
        self.r.refs[logical_id] = key_id
        self.r.attributes[(logical_id, "Arn")] = key["KeyMetadata"]["Arn"]
        self.r.attributes[(logical_id, "KeyId")] = key_id

    def _kms_alias(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        self.client("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
        self.r.refs[logical_id] = props["AliasName"]

    def _role(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        name = props.get("RoleName") or self._physical(logical_id)
        iam = self.client("iam")
        arn = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=to_json(props["AssumeRolePolicyDocument"]),
            Description=props.get("Description", ""),
        )["Role"]["Arn"]
        for policy in props.get("Policies", []):
            iam.put_role_policy(
                RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=to_json(policy["PolicyDocument"])
            )
        self.r.refs[logical_id] = name
        self.r.attributes[(logical_id, "Arn")] = arn

    def _managed_policy(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        """A customer managed policy; its Ref is its ARN. Roles it names get it attached (a function's role
        is SAM's and not created here: the IAM check reads which policies it gets from the rendered template)."""
        name = props.get("ManagedPolicyName") or self._physical(logical_id, 128)
        iam = self.client("iam")
        arn = iam.create_policy(
            PolicyName=name,
            PolicyDocument=to_json(props["PolicyDocument"]),
            Description=props.get("Description", ""),
        )["Policy"]["Arn"]
        for role in props.get("Roles", []):
            iam.attach_role_policy(RoleName=role, PolicyArn=arn)
        self.r.refs[logical_id] = arn

    def _log_group(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        name = props["LogGroupName"]
        logs = self.client("logs")
        logs.create_log_group(logGroupName=name)
        if "RetentionInDays" in props:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
        self.r.refs[logical_id] = name
        self.r.attributes[(logical_id, "Arn")] = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}:*"

    def _layer(self, logical_id: str, props: dict[str, Any], _: dict[str, Any]) -> None:
        self.r.refs[logical_id] = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{self._physical(logical_id)}:1"
        self._layer_dirs[self.r.refs[logical_id]] = self.root / props["ContentUri"]

    def _function(self, logical_id: str, raw: dict[str, Any], _: dict[str, Any]) -> None:
        name = raw.get("FunctionName") or self._physical(logical_id)
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
        self.r.refs[logical_id] = name
        self.r.attributes[(logical_id, "Arn")] = arn
        # Rules SAM creates for EventBridgeRule events exist before the environment is resolved.
        events = raw.get("Events", {})
        spec = FunctionSpec(
            logical_id=logical_id,
            name=name,
            arn=arn,
            code_dir=self.root / raw["CodeUri"],
            handler=raw["Handler"],
            timeout=int(self.r.resolve(raw.get("Timeout", 3))),
            environment={},
            layer_dirs=[self._layer_dirs[a] for a in self.r.resolve(raw.get("Layers", [])) if a in self._layer_dirs],
        )
        for event_name, event in events.items():
            props = self.r.resolve(event.get("Properties", {}))
            if event["Type"] == "SQS":
                spec.sqs_sources.append(
                    SqsSource(
                        queue_url=self.stack.queue_url_for_arn(props["Queue"]),
                        queue_arn=props["Queue"],
                        batch_size=int(props.get("BatchSize", 10)),
                        batching_window_seconds=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                        report_batch_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
                        maximum_concurrency=_maximum_concurrency(logical_id, event_name, props),
                    )
                )
            elif event["Type"] == "EventBridgeRule":
                spec.rule_deliveries.append(self._rule_to_function(logical_id, event_name, props))
            elif event["Type"] == "Schedule":
                spec.rule_deliveries.append(self._schedule_to_function(logical_id, event_name, props, arn))
            elif event["Type"] == "ScheduleV2":
                spec.rule_deliveries.append(self._schedule_v2_to_function(logical_id, event_name, props, arn))
            else:
                raise TemplateError(f"the sandbox cannot emulate {event['Type']} events ({logical_id}.{event_name})")
        if raw.get("ReservedConcurrentExecutions") is not None:
            reserved = int(self.r.resolve(raw["ReservedConcurrentExecutions"]))
            if reserved < 0:
                raise TemplateError(f"{logical_id}: ReservedConcurrentExecutions must be 0 or more, not {reserved}")
            spec.reserved_concurrency = reserved
        invoke = self.r.resolve(raw.get("EventInvokeConfig", {}))
        spec.max_async_retries = int(invoke.get("MaximumRetryAttempts", 2))
        on_failure = invoke.get("DestinationConfig", {}).get("OnFailure", {})
        if on_failure.get("Type") == "SQS":
            spec.on_failure_queue_arn = on_failure["Destination"]
        spec.environment = {
            k: str(v) for k, v in self.r.resolve(raw.get("Environment", {})).get("Variables", {}).items()
        }
        self.stack.functions[logical_id] = spec

    def _rule_to_function(self, function_id: str, event_name: str, props: dict[str, Any]) -> RuleDelivery:
        rule_id = f"{function_id}{event_name}"
        rule_name = self._physical(rule_id)
        sqs = self.client("sqs")
        delivery = f"{self.stack.name}-{rule_id}-delivery"[:80]
        url = sqs.create_queue(QueueName=delivery)["QueueUrl"]
        events = self.client("events")
        arn = events.put_rule(Name=rule_name, EventPattern=to_json(props["Pattern"]), State="ENABLED")["RuleArn"]
        events.put_targets(
            Rule=rule_name, Targets=[{"Id": "function", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{delivery}"}]
        )
        self.r.refs[rule_id] = rule_name
        self.r.attributes[(rule_id, "Arn")] = arn
        return RuleDelivery(rule_name, url, props.get("DeadLetterConfig", {}).get("Arn"))

    def _delivery_queue(self, rule_id: str) -> tuple[str, str]:
        delivery = f"{self.stack.name}-{rule_id}-delivery"[:80]
        url = self.client("sqs").create_queue(QueueName=delivery)["QueueUrl"]
        return url, delivery

    @staticmethod
    def _schedule_state(function_id: str, event_name: str, props: dict[str, Any]) -> str:
        if "Enabled" in props and "State" in props:
            raise TemplateError(f"{function_id}.{event_name}: give Enabled or State, not both (SAM refuses both)")
        if "State" in props:
            state = str(props["State"])
            if state not in ("ENABLED", "DISABLED"):
                raise TemplateError(f"{function_id}.{event_name}: State must be ENABLED or DISABLED, not {state}")
            return state
        enabled = props.get("Enabled", True)
        if isinstance(enabled, str):
            enabled = enabled.lower() == "true"
        return "ENABLED" if enabled else "DISABLED"

    def _schedule_to_function(self, function_id: str, event_name: str, props: dict[str, Any], arn: str) -> RuleDelivery:
        rule_id = f"{function_id}{event_name}"
        rule_name = props.get("Name") or self._physical(rule_id)
        expression = str(props["Schedule"])
        events = self.client("events")
        rule_arn = events.put_rule(
            Name=rule_name,
            ScheduleExpression=expression,
            State=self._schedule_state(function_id, event_name, props),
            Description=str(props.get("Description", "")),
        )["RuleArn"]
        target: dict[str, Any] = {"Id": f"{rule_id}LambdaTarget", "Arn": arn}
        if "Input" in props:
            target["Input"] = str(props["Input"])
        if "RetryPolicy" in props:
            target["RetryPolicy"] = props["RetryPolicy"]
        if props.get("DeadLetterConfig", {}).get("Arn"):
            target["DeadLetterConfig"] = {"Arn": props["DeadLetterConfig"]["Arn"]}
        events.put_targets(Rule=rule_name, Targets=[target])
        url, _ = self._delivery_queue(rule_id)
        self.r.refs[rule_id] = rule_name
        self.r.attributes[(rule_id, "Arn")] = rule_arn
        return RuleDelivery(
            rule_name,
            url,
            props.get("DeadLetterConfig", {}).get("Arn"),
            schedule_expression=expression,
            rule_arn=rule_arn,
            input=str(props["Input"]) if "Input" in props else None,
        )

    def _schedule_v2_to_function(
        self, function_id: str, event_name: str, props: dict[str, Any], arn: str
    ) -> RuleDelivery:
        rule_id = f"{function_id}{event_name}"
        if "Input" not in props:
            raise TemplateError(
                f"{function_id}.{event_name}: a ScheduleV2 event needs Input in the sandbox (without it the "
                "Scheduler sends an undocumented default notification to a Lambda target)"
            )
        name = props.get("Name") or self._physical(rule_id)
        group = str(props.get("GroupName", "default"))
        expression = str(props["ScheduleExpression"])
        target: dict[str, Any] = {
            "Arn": arn,
            "RoleArn": props.get("RoleArn") or f"arn:aws:iam::{ACCOUNT_ID}:role/{self._physical(rule_id + 'Role')}",
            "Input": str(props["Input"]),
        }
        if "RetryPolicy" in props:
            target["RetryPolicy"] = props["RetryPolicy"]
        if props.get("DeadLetterConfig", {}).get("Arn"):
            target["DeadLetterConfig"] = {"Arn": props["DeadLetterConfig"]["Arn"]}
        request: dict[str, Any] = {
            "Name": name,
            "GroupName": group,
            "ScheduleExpression": expression,
            "FlexibleTimeWindow": props.get("FlexibleTimeWindow", {"Mode": "OFF"}),
            "Target": target,
            "State": self._schedule_state(function_id, event_name, props),
        }
        for key in ("Description", "ScheduleExpressionTimezone"):
            if key in props:
                request[key] = str(props[key])
        schedule_arn = self.client("scheduler").create_schedule(**request)["ScheduleArn"]
        url, _ = self._delivery_queue(rule_id)
        self.r.refs[rule_id] = name
        self.r.attributes[(rule_id, "Arn")] = schedule_arn
        return RuleDelivery(
            name,
            url,
            props.get("DeadLetterConfig", {}).get("Arn"),
            schedule_expression=expression,
            rule_arn=schedule_arn,
            input=str(props["Input"]),
            scheduler_group=group,
        )


def _maximum_concurrency(function_id: str, event_name: str, props: dict[str, Any]) -> int | None:
    """An SQS event's ScalingConfig.MaximumConcurrency, which Lambda accepts from 2 to 1,000."""
    value = props.get("ScalingConfig", {}).get("MaximumConcurrency")
    if value is None:
        return None
    maximum = int(value)
    if not 2 <= maximum <= 1000:
        raise TemplateError(
            f"{function_id}.{event_name}: ScalingConfig.MaximumConcurrency must be between 2 and 1000 "
            f"(Lambda's range), not {maximum}"
        )
    return maximum


def provision(
    root: Path,
    client: ClientFactory,
    *,
    stack_name: str = "sagepilot-sandbox",
    overrides: Mapping[str, str] | None = None,
) -> Stack:
    """Create every resource of root/template.yaml and return the stack's description."""
    provisioner = Provisioner(root, client, stack_name, overrides or {})
    return provisioner.provision()


def describe(stack: Stack) -> str:
    return json.dumps({"stack": stack.name, "outputs": stack.outputs}, indent=2)
