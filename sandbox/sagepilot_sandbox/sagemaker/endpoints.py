"""SageMaker real-time endpoints as SageMaker runs them: states that take time, refusals, events.

moto makes an endpoint InService the moment it is created, has no UpdateEndpoint, nulls the counts of
variants left out of UpdateEndpointWeightsAndCapacities and never emits an event. Here, faithfully:

- CreateEndpoint: the endpoint is `Creating` (its variants show only their Desired weight and count,
  with a `VariantStatus` `Creating` "Launching N instance(s)."), then one *pending transition* makes
  it `InService` with CurrentWeight = DesiredWeight = InitialVariantWeight (default 1.0) and
  CurrentInstanceCount = DesiredInstanceCount = InitialInstanceCount, or `Failed` with a
  FailureReason when a failure was injected (`fail_next_endpoint`) or the transition is completed with
  `failure=` (the simulator's health check: a container that did not pass `/ping`). A second CreateEndpoint of the
  same name, in any case (SageMaker: "The name is case-insensitive in CreateEndpoint"), is refused
  (`Cannot create already existing endpoint "<arn>".`), as is a second
  CreateEndpointConfig (`Cannot create already existing endpoint configuration "<arn>".`).
- UpdateEndpoint (EndpointConfigName, DeploymentConfig, RetainDeploymentConfig,
  RetainAllVariantProperties, ExcludeRetainedVariantProperties): the endpoint must exist, must not be
  Failed (`Cannot update failed endpoint "<arn>".`), must be InService (`Cannot update in-progress
  endpoint "<arn>".`), the config must exist (`Could not find endpoint configuration "<arn>".`), and
  no variant that is registered with Application Auto Scaling (namespace sagemaker, ResourceId
  `endpoint/<ep>/variant/<v>`) may be removed or change instance type (changing its model is
  allowed, as SageMaker's documentation says). The endpoint is `Updating` and DescribeEndpoint shows
  the new config in `PendingDeploymentSummary` while the old variants keep serving; the transition
  switches EndpointConfigName and ProductionVariants and makes it `InService` again; completed with
  `failure=` (a new variant's container did not start), it leaves the old config and variants InService
  with that FailureReason instead, as SageMaker does.
- Deployment guardrails: with `DeploymentConfig.BlueGreenUpdatePolicy` (ALL_AT_ONCE, CANARY or
  LINEAR with WaitIntervalInSeconds, CanarySize / LinearStepSize, TerminationWaitInSeconds) or a
  RollingUpdatePolicy, the update also bakes: the transition knows how many AWS seconds of traffic
  shifting and baking it has (`Transition.bake_seconds`); the simulator waits them out on its
  compressed clock. If any alarm of `AutoRollbackConfiguration.Alarms` is in ALARM while the update
  runs (the simulator watches them; `complete_endpoint_transition` checks them too), the update rolls
  back: `RollingBack`, then `InService` on the old config and variants with a FailureReason naming
  the alarms, as SageMaker leaves a rolled-back endpoint (the old config stays, the reason shows in
  DescribeEndpoint). `LastDeploymentConfig` shows the deployment config in use.
- UpdateEndpointWeightsAndCapacities: InService only (same refusals as UpdateEndpoint); an unknown or
  repeated variant is a ValidationException; DesiredWeight / DesiredInstanceCount change at once, the
  endpoint is `Updating`, the transition makes Current = Desired and `InService`. Variants left out
  of the call keep their values, and every variant always has all four numbers.
- DeleteEndpoint: allowed when InService, Failed or OutOfService. While the endpoint is Creating,
  Updating, RollingBack, SystemUpdating or Deleting SageMaker refuses it with `Cannot update
  in-progress endpoint "<arn>".` (AWS's own Kubernetes operator and field reports show this; set
  `allow_delete_in_progress = True` to delete in any state). The endpoint is `Deleting` (an event says
  so) until its transition removes it; its variants' scalable targets are deregistered, as
  Application Auto Scaling does for a deleted endpoint. DescribeEndpoint of a missing endpoint:
  `Could not find endpoint "<arn>".` (moto quotes with ' instead of ").

Shadow variants (`ShadowProductionVariants` of CreateEndpointConfig, which moto drops): at most one, and only
beside exactly one production variant (else a ValidationException), kept with the config
(DescribeEndpointConfig shows them); an endpoint created or updated to such a config shows the shadow under
`ShadowProductionVariants` in DescribeEndpoint once InService (CurrentWeight / CurrentInstanceCount as for a
production variant), and an update to a config without one removes it. The shadow's weight relative to the
production variant's is the share of requests copied to it (`shadow_share`; see `invocations`).

Every status change emits `SageMaker Endpoint State Change` (detail: EndpointName, EndpointArn,
EndpointConfigName, ProductionVariants, EndpointStatus, CreationTime / LastModifiedTime in epoch
millis, Tags as a map, FailureReason when set). API calls deliver their event at once through
`bus.deliver_event`; a transition's event is returned by `complete_endpoint_transition` for the caller
(the simulator, or a test) to deliver, like transform jobs. The status is spelled as DescribeEndpoint
spells it (`InService`); SageMaker's documented sample spells it `IN_SERVICE`: set
`status_spelling = "event"` to get that spelling instead.
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.responses import ActionResult
from moto.sagemaker import models as sm_models
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint, FakeEndpointConfig, sagemaker_backends

from sagepilot_sandbox import bus

EndpointListener = Callable[[str, str, str], None]  # (account, region, endpoint name)

IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
_EVENT_SPELLING = {
    "OutOfService": "OUT_OF_SERVICE",
    "Creating": "CREATING",
    "Updating": "UPDATING",
    "SystemUpdating": "SYSTEM_UPDATING",
    "RollingBack": "ROLLING_BACK",
    "InService": "IN_SERVICE",
    "Deleting": "DELETING",
    "Failed": "FAILED",
    "UpdateRollbackFailed": "UPDATE_ROLLBACK_FAILED",
}
TRAFFIC_TYPES = ("ALL_AT_ONCE", "CANARY", "LINEAR")

# "describe": EndpointStatus in events as DescribeEndpoint spells it (InService); "event": IN_SERVICE.
status_spelling = "describe"
allow_delete_in_progress = False

_lock = threading.RLock()
_tokens = itertools.count(1)
_listeners: list[EndpointListener] = []
_injected: list[tuple[str, str, bool]] = []  # (name fragment, reason, roll back instead of Failed)


@dataclass(frozen=True)
class Transition:
    """What SageMaker still has to do for an endpoint; `complete_endpoint_transition` does it."""

    kind: str  # create | update | weights | rollback | delete
    token: int
    started: datetime
    config_name: str = ""  # update: the config being deployed
    alarms: tuple[str, ...] = ()  # update: AutoRollbackConfiguration alarm names
    bake_seconds: float = 0.0  # update: AWS seconds of traffic shifting and baking
    reason: str = ""  # rollback: the FailureReason it leaves
    retain_all: bool = False
    exclude_retained: tuple[str, ...] = ()


# Registration ----------------------------------------------------------------------------------------
def on_endpoint_transition(listener: EndpointListener) -> None:
    """Call `listener(account, region, name)` whenever an endpoint gets a new pending transition."""
    _listeners.append(listener)


def clear() -> None:
    """Forget listeners and injected failures (settings go back to their defaults)."""
    global status_spelling, allow_delete_in_progress
    with _lock:
        _listeners.clear()
        _injected.clear()
        status_spelling = "describe"
        allow_delete_in_progress = False


def fail_next_endpoint(reason: str = "", name_contains: str = "", *, rollback: bool = False) -> None:
    """The next create or update of an endpoint whose name contains `name_contains` fails.

    Without `rollback` the endpoint ends `Failed` with `reason` as FailureReason (SageMaker's health
    check message when empty). With `rollback` an update rolls back instead (RollingBack, then
    InService on the old config with the FailureReason), as SageMaker does with most failed updates of
    an InService endpoint; a create still ends Failed.
    """
    with _lock:
        _injected.append((name_contains, reason, rollback))


def _take_injected(name: str) -> tuple[str, bool] | None:
    for i, (fragment, reason, rollback) in enumerate(_injected):
        if fragment in name:
            del _injected[i]
            return reason, rollback
    return None


# Helpers ---------------------------------------------------------------------------------------------
def _backend(account: str, region: str) -> Any:
    return sagemaker_backends[account][region]


def _endpoint_arn(backend: Any, name: str) -> str:
    return str(FakeEndpoint.arn_formatter(name, backend.account_id, backend.region_name))


def _config_arn(backend: Any, name: str) -> str:
    return str(FakeEndpointConfig.arn_formatter(name, backend.account_id, backend.region_name))


def _not_found(backend: Any, name: str) -> ValidationError:
    return ValidationError(message=f'Could not find endpoint "{_endpoint_arn(backend, name)}".')


def _config_not_found(backend: Any, name: str) -> ValidationError:
    return ValidationError(message=f'Could not find endpoint configuration "{_config_arn(backend, name)}".')


def _in_progress(endpoint: Any) -> ValidationError:
    return ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')


def _now() -> datetime:
    return datetime.now(UTC)


def health_check_reason(variant: str) -> str:
    """SageMaker's FailureReason when a variant's container does not pass the ping health check."""
    return (
        f"The primary container for production variant {variant} did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint."
    )


def _health_check_reason(variants: list[dict[str, Any]]) -> str:
    return health_check_reason(variants[0]["VariantName"] if variants else "AllTraffic")


def config_variants(config: Any) -> list[dict[str, Any]]:
    """A config's production variants and its shadow variants (what an endpoint on it runs containers for)."""
    return [*(config.production_variants or []), *getattr(config, "sp_shadow_variants", [])]


def shadow_share(production: list[dict[str, Any]], shadow: dict[str, Any]) -> float:
    """The share of requests SageMaker copies to `shadow`: its weight relative to the production variant's."""
    weight = sum(float(v.get("CurrentWeight") or 0.0) for v in production)
    return min(1.0, float(shadow.get("CurrentWeight") or 0.0) / weight) if weight > 0 else 0.0


def _serving_variant(spec: dict[str, Any]) -> dict[str, Any]:
    """A variant of a config as DescribeEndpoint shows it once it serves."""
    variant: dict[str, Any] = {"VariantName": spec["VariantName"]}
    weight = float(spec.get("InitialVariantWeight", 1.0))
    variant["CurrentWeight"] = weight
    variant["DesiredWeight"] = weight
    if "ServerlessConfig" in spec:
        variant["CurrentServerlessConfig"] = dict(spec["ServerlessConfig"])
        variant["DesiredServerlessConfig"] = dict(spec["ServerlessConfig"])
    else:
        count = int(spec.get("InitialInstanceCount", 1))
        variant["CurrentInstanceCount"] = count
        variant["DesiredInstanceCount"] = count
    return variant


def _launching_variant(spec: dict[str, Any], started: datetime) -> dict[str, Any]:
    """A variant being created: only what is desired, and what SageMaker is doing about it."""
    variant: dict[str, Any] = {
        "VariantName": spec["VariantName"],
        "DesiredWeight": float(spec.get("InitialVariantWeight", 1.0)),
    }
    if "ServerlessConfig" in spec:
        variant["DesiredServerlessConfig"] = dict(spec["ServerlessConfig"])
        message = "Creating serverless capacity."
    else:
        count = int(spec.get("InitialInstanceCount", 1))
        variant["DesiredInstanceCount"] = count
        message = f"Launching {count} instance(s)."
    variant["VariantStatus"] = [{"Status": "Creating", "StatusMessage": message, "StartTime": started}]
    return variant


def _pending(endpoint: Any) -> Transition | None:
    return getattr(endpoint, "sp_pending", None)


def _set_pending(backend: Any, endpoint: Any, transition: Transition | None) -> None:
    endpoint.sp_pending = transition
    if transition is not None:
        for listener in list(_listeners):
            listener(backend.account_id, backend.region_name, endpoint.endpoint_name)


def _set_status(endpoint: Any, status: str) -> None:
    endpoint.endpoint_status = status
    endpoint.last_modified_time = _now()


def _registered_variants(account: str, region: str, endpoint_name: str) -> dict[str, Any]:
    """Application Auto Scaling targets of the endpoint's variants, by variant name."""
    prefix = f"endpoint/{endpoint_name}/variant/"
    autoscaling = applicationautoscaling_backends[account][region]
    found: dict[str, Any] = {}
    for target in autoscaling._flatten_scalable_targets("sagemaker"):
        if target.resource_id.startswith(prefix):
            found[target.resource_id[len(prefix) :]] = target
    return found


def _deregister_variants(account: str, region: str, endpoint_name: str) -> None:
    autoscaling = applicationautoscaling_backends[account][region]
    for target in _registered_variants(account, region, endpoint_name).values():
        autoscaling.deregister_scalable_target(target.service_namespace, target.resource_id, target.scalable_dimension)


def alarms_in_alarm(names: tuple[str, ...] | list[str], *, account: str, region: str) -> list[str]:
    """Which of the named CloudWatch alarms are in ALARM now (an alarm that does not exist is not)."""
    alarms = cloudwatch_backends[account][region].alarms
    return [n for n in names if n in alarms and alarms[n].state_value == "ALARM"]


def _bake_seconds(deployment: dict[str, Any] | None, specs: list[dict[str, Any]]) -> float:
    """AWS seconds an update spends shifting traffic and baking under its DeploymentConfig."""
    if not deployment:
        return 0.0
    total_instances = sum(int(s.get("InitialInstanceCount", 1)) for s in specs) or 1
    blue_green = deployment.get("BlueGreenUpdatePolicy")
    if blue_green:
        routing = blue_green["TrafficRoutingConfiguration"]
        wait = float(routing.get("WaitIntervalInSeconds", 0))
        steps = 1
        if routing["Type"] == "CANARY":
            steps = 2
        elif routing["Type"] == "LINEAR":
            size = routing["LinearStepSize"]
            share = (
                float(size["Value"]) / 100.0
                if size["Type"] == "CAPACITY_PERCENT"
                else float(size["Value"]) / total_instances
            )
            steps = max(1, math.ceil(1.0 / max(share, 1e-9)))
        return wait * steps + float(blue_green.get("TerminationWaitInSeconds", 0))
    rolling = deployment.get("RollingUpdatePolicy")
    if rolling:
        batch = rolling["MaximumBatchSize"]
        share = (
            float(batch["Value"]) / 100.0
            if batch["Type"] == "CAPACITY_PERCENT"
            else float(batch["Value"]) / total_instances
        )
        return float(rolling.get("WaitIntervalInSeconds", 0)) * max(1, math.ceil(1.0 / max(share, 1e-9)))
    return 0.0


def _validate_deployment(deployment: dict[str, Any]) -> None:
    blue_green = deployment.get("BlueGreenUpdatePolicy")
    rolling = deployment.get("RollingUpdatePolicy")
    if blue_green and rolling:
        raise ValidationError(message="Only one of BlueGreenUpdatePolicy and RollingUpdatePolicy can be specified.")
    if blue_green:
        routing = blue_green.get("TrafficRoutingConfiguration") or {}
        kind = routing.get("Type")
        if kind not in TRAFFIC_TYPES:
            raise ValidationError(
                message=f"Value '{kind}' at 'deploymentConfig.blueGreenUpdatePolicy.trafficRoutingConfiguration.type' "
                f"failed to satisfy constraint: Member must satisfy enum value set: [{', '.join(TRAFFIC_TYPES)}]"
            )
        if "WaitIntervalInSeconds" not in routing:
            raise ValidationError(message="WaitIntervalInSeconds is required in TrafficRoutingConfiguration.")
        if kind == "CANARY" and "CanarySize" not in routing:
            raise ValidationError(message="CanarySize must be specified for CANARY traffic routing.")
        if kind == "LINEAR" and "LinearStepSize" not in routing:
            raise ValidationError(message="LinearStepSize must be specified for LINEAR traffic routing.")
    alarms = (deployment.get("AutoRollbackConfiguration") or {}).get("Alarms") or []
    if len(alarms) > 10:
        raise ValidationError(message="AutoRollbackConfiguration can have at most 10 alarms.")


def _alarm_names(deployment: dict[str, Any] | None) -> tuple[str, ...]:
    if not deployment:
        return ()
    alarms = (deployment.get("AutoRollbackConfiguration") or {}).get("Alarms") or []
    return tuple(str(a["AlarmName"]) for a in alarms)


# DescribeEndpoint and the event ----------------------------------------------------------------------
def _describe(endpoint: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "EndpointName": endpoint.endpoint_name,
        "EndpointArn": endpoint.arn,
        "EndpointConfigName": endpoint.endpoint_config_name,
    }
    if endpoint.production_variants:
        response["ProductionVariants"] = copy.deepcopy(endpoint.production_variants)
    shadows = getattr(endpoint, "sp_shadow_variants", [])
    if shadows:
        response["ShadowProductionVariants"] = copy.deepcopy(shadows)
    capture = endpoint.data_capture_config or {}
    if capture:
        enabled = bool(capture.get("EnableCapture", False))
        response["DataCaptureConfig"] = {
            "EnableCapture": enabled,
            "CaptureStatus": "Started" if enabled else "Stopped",
            "CurrentSamplingPercentage": int(capture.get("InitialSamplingPercentage", 0)),
            "DestinationS3Uri": capture.get("DestinationS3Uri", ""),
            **({"KmsKeyId": capture["KmsKeyId"]} if capture.get("KmsKeyId") else {}),
        }
    response["EndpointStatus"] = endpoint.endpoint_status
    if endpoint.failure_reason:
        response["FailureReason"] = endpoint.failure_reason
    response["CreationTime"] = endpoint.creation_time
    response["LastModifiedTime"] = endpoint.last_modified_time
    last_deployment = getattr(endpoint, "sp_last_deployment", None)
    if last_deployment:
        response["LastDeploymentConfig"] = copy.deepcopy(last_deployment)
    pending = _pending(endpoint)
    if pending is not None and pending.kind == "update":
        specs = getattr(endpoint, "sp_pending_specs", [])
        response["PendingDeploymentSummary"] = {
            "EndpointConfigName": pending.config_name,
            "ProductionVariants": [_launching_variant(s, pending.started) for s in specs],
            "StartTime": pending.started,
        }
    return response


def _event_variants(variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for variant in copy.deepcopy(variants):
        for status in variant.get("VariantStatus", []):
            status["StartTime"] = bus.epoch_millis(status.get("StartTime"))
        out.append(variant)
    return out


def endpoint_event(
    name: str, *, account: str = bus.DEFAULT_ACCOUNT, region: str = bus.DEFAULT_REGION
) -> dict[str, Any]:
    """`SageMaker Endpoint State Change` for the endpoint's current state (times in epoch millis)."""
    endpoint = _backend(account, region).endpoints[name]
    status = endpoint.endpoint_status
    detail: dict[str, Any] = {
        "EndpointName": endpoint.endpoint_name,
        "EndpointArn": endpoint.arn,
        "EndpointConfigName": endpoint.endpoint_config_name,
        "ProductionVariants": _event_variants(endpoint.production_variants or []),
        "EndpointStatus": _EVENT_SPELLING.get(status, status) if status_spelling == "event" else status,
        "CreationTime": bus.epoch_millis(endpoint.creation_time),
        "LastModifiedTime": bus.epoch_millis(endpoint.last_modified_time),
        "Tags": {t["Key"]: t["Value"] for t in (endpoint.tags or [])},
    }
    if endpoint.failure_reason:
        detail["FailureReason"] = endpoint.failure_reason
    return bus.make_event("SageMaker Endpoint State Change", "aws.sagemaker", account, region, [endpoint.arn], detail)


def _emit(backend: Any, endpoint: Any) -> None:
    account, region = backend.account_id, backend.region_name
    event = endpoint_event(endpoint.endpoint_name, account=account, region=region)
    bus.deliver_event(event, account=account, region=region)


# The API, patched into moto's backend --------------------------------------------------------------
def _create_endpoint_config(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_endpoint_config(self: Any, endpoint_config_name: str, *args: Any, **kwargs: Any) -> Any:
        if endpoint_config_name in self.endpoint_configs:
            arn = _config_arn(self, endpoint_config_name)
            raise ValidationError(message=f'Cannot create already existing endpoint configuration "{arn}".')
        return original(self, endpoint_config_name, *args, **kwargs)

    return create_endpoint_config


def _response_create_endpoint_config(original: Callable[..., Any]) -> Callable[..., Any]:
    """CreateEndpointConfig with its ShadowProductionVariants (moto reads no such parameter)."""

    def create_endpoint_config(self: Any) -> Any:
        shadows = self._get_param("ShadowProductionVariants") or []
        production = self._get_param("ProductionVariants") or []
        if shadows:
            if len(shadows) > 1 or len(production) != 1:
                raise ValidationError(
                    message="An endpoint configuration with ShadowProductionVariants must have exactly one "
                    f"ProductionVariant and one ShadowProductionVariant, got {len(production)} and {len(shadows)}."
                )
            names = [v.get("VariantName") for v in production + shadows]
            if len(set(names)) != len(names):
                raise ValidationError(message=f"Variant names must be unique, got {names}.")
        result = original(self)
        if shadows:
            name = self._get_param("EndpointConfigName")
            self.sagemaker_backend.endpoint_configs[name].sp_shadow_variants = copy.deepcopy(shadows)
        return result

    return create_endpoint_config


def _describe_endpoint_config(self: Any, endpoint_config_name: str) -> dict[str, Any]:
    config = self.endpoint_configs.get(endpoint_config_name)
    if config is None:
        raise _config_not_found(self, endpoint_config_name)
    response = dict(config.response_object)
    shadows = getattr(config, "sp_shadow_variants", [])
    if shadows:
        response["ShadowProductionVariants"] = copy.deepcopy(shadows)
    return response


def _delete_endpoint_config(self: Any, endpoint_config_name: str) -> None:
    if self.endpoint_configs.pop(endpoint_config_name, None) is None:
        raise _config_not_found(self, endpoint_config_name)


def _create_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str, tags: list[dict[str, str]]) -> Any:
    with _lock:
        existing = next((n for n in self.endpoints if n.lower() == endpoint_name.lower()), None)  # case-insensitive
        if existing is not None:
            arn = _endpoint_arn(self, existing)
            raise ValidationError(message=f'Cannot create already existing endpoint "{arn}".')
        config = self.endpoint_configs.get(endpoint_config_name)
        if config is None:
            raise _config_not_found(self, endpoint_config_name)
        specs = copy.deepcopy(config.production_variants)
        endpoint: Any = FakeEndpoint(  # type: ignore[abstract]
            account_id=self.account_id,
            region_name=self.region_name,
            endpoint_name=endpoint_name,
            endpoint_config_name=endpoint_config_name,
            production_variants=[],
            data_capture_config=copy.deepcopy(config.data_capture_config),
            tags=tags or [],
        )
        started = endpoint.creation_time
        endpoint.endpoint_status = "Creating"
        endpoint.sp_specs = specs
        endpoint.sp_shadow_specs = copy.deepcopy(getattr(config, "sp_shadow_variants", []))
        endpoint.sp_shadow_variants = []
        endpoint.production_variants = [_launching_variant(s, started) for s in specs]
        endpoint.sp_last_deployment = None
        self.endpoints[endpoint_name] = endpoint
        _emit(self, endpoint)
        _set_pending(self, endpoint, Transition("create", next(_tokens), started))
        return endpoint


def _describe_endpoint(self: Any, endpoint_name: str) -> dict[str, Any]:
    endpoint = self.endpoints.get(endpoint_name)
    if endpoint is None:
        raise _not_found(self, endpoint_name)
    with _lock:
        return _describe(endpoint)


def _delete_endpoint(self: Any, endpoint_name: str) -> None:
    with _lock:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            raise _not_found(self, endpoint_name)
        if endpoint.endpoint_status in IN_PROGRESS and not allow_delete_in_progress:
            raise _in_progress(endpoint)
        _deregister_variants(self.account_id, self.region_name, endpoint_name)
        endpoint.sp_pending_specs = []
        _set_status(endpoint, "Deleting")
        _emit(self, endpoint)
        _set_pending(self, endpoint, Transition("delete", next(_tokens), _now()))


def _check_updatable(self: Any, endpoint: Any) -> None:
    if endpoint.endpoint_status == "Failed":
        raise ValidationError(message=f'Cannot update failed endpoint "{endpoint.arn}".')
    if endpoint.endpoint_status != "InService":
        raise _in_progress(endpoint)


def _update_endpoint(
    self: Any,
    endpoint_name: str,
    endpoint_config_name: str,
    deployment_config: dict[str, Any] | None = None,
    retain_deployment_config: bool = False,
    retain_all_variant_properties: bool = False,
    exclude_retained_variant_properties: list[dict[str, str]] | None = None,
) -> str:
    with _lock:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            raise _not_found(self, endpoint_name)
        _check_updatable(self, endpoint)
        config = self.endpoint_configs.get(endpoint_config_name)
        if config is None:
            raise _config_not_found(self, endpoint_config_name)
        new_specs = copy.deepcopy(config.production_variants)
        new_by_name = {s["VariantName"]: s for s in new_specs}
        current_by_name = {s["VariantName"]: s for s in getattr(endpoint, "sp_specs", [])}
        blocked = [
            variant
            for variant in sorted(_registered_variants(self.account_id, self.region_name, endpoint_name))
            if variant in current_by_name
            and (
                variant not in new_by_name
                or new_by_name[variant].get("InstanceType") != current_by_name[variant].get("InstanceType")
            )
        ]
        if blocked:
            raise ValidationError(
                message=f'The variant(s) "[{", ".join(blocked)}]" must be deregistered as scalable targets with '
                "AWS Application Auto Scaling before they can be removed or have their instance type updated."
            )
        if deployment_config:
            _validate_deployment(deployment_config)
            endpoint.sp_last_deployment = copy.deepcopy(deployment_config)
        elif not retain_deployment_config:
            endpoint.sp_last_deployment = None
        deployment = getattr(endpoint, "sp_last_deployment", None)
        endpoint.sp_pending_specs = new_specs
        endpoint.sp_pending_shadow_specs = copy.deepcopy(getattr(config, "sp_shadow_variants", []))
        endpoint.failure_reason = None
        _set_status(endpoint, "Updating")
        transition = Transition(
            "update",
            next(_tokens),
            endpoint.last_modified_time,
            config_name=endpoint_config_name,
            alarms=_alarm_names(deployment),
            bake_seconds=_bake_seconds(deployment, new_specs),
            retain_all=bool(retain_all_variant_properties),
            exclude_retained=tuple(p["VariantPropertyType"] for p in exclude_retained_variant_properties or []),
        )
        _emit(self, endpoint)
        _set_pending(self, endpoint, transition)
        return str(endpoint.arn)


def _update_weights(self: Any, endpoint_name: str, desired_weights_and_capacities: list[dict[str, Any]]) -> str:
    with _lock:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            raise _not_found(self, endpoint_name)
        _check_updatable(self, endpoint)
        by_name = {v["VariantName"]: v for v in endpoint.production_variants}
        seen: set[str] = set()
        for wanted in desired_weights_and_capacities:
            name = wanted.get("VariantName")
            if name in seen:
                raise ValidationError(message=f'The variant name "{name}" was non-unique within the request.')
            seen.add(str(name))
            if name not in by_name:
                raise ValidationError(
                    message=f'The variant name(s) "{name}" is/are not present within endpoint configuration '
                    f'"{endpoint.endpoint_config_name}".'
                )
            if wanted.get("DesiredWeight") is None and wanted.get("DesiredInstanceCount") is None:
                raise ValidationError(
                    message=f'Either DesiredWeight or DesiredInstanceCount must be specified for variant "{name}".'
                )
        started = _now()
        for wanted in desired_weights_and_capacities:
            variant = by_name[wanted["VariantName"]]
            if wanted.get("DesiredWeight") is not None:
                variant["DesiredWeight"] = float(wanted["DesiredWeight"])
            count = wanted.get("DesiredInstanceCount")
            if count is not None and "DesiredInstanceCount" in variant:
                direction = "out" if int(count) > int(variant.get("CurrentInstanceCount", 0)) else "in"
                variant["DesiredInstanceCount"] = int(count)
                if int(count) != int(variant.get("CurrentInstanceCount", 0)):
                    variant["VariantStatus"] = [
                        {
                            "Status": "Updating",
                            "StatusMessage": f"Scaling {direction} desired instance count to {int(count)}.",
                            "StartTime": started,
                        }
                    ]
        _set_status(endpoint, "Updating")
        _emit(self, endpoint)
        _set_pending(self, endpoint, Transition("weights", next(_tokens), started))
        return str(endpoint.arn)


def _response_update_endpoint(self: Any) -> Any:
    arn = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        deployment_config=self._get_param("DeploymentConfig"),
        retain_deployment_config=bool(self._get_param("RetainDeploymentConfig", False)),
        retain_all_variant_properties=bool(self._get_param("RetainAllVariantProperties", False)),
        exclude_retained_variant_properties=self._get_param("ExcludeRetainedVariantProperties"),
    )
    return ActionResult({"EndpointArn": arn})


# Transitions -----------------------------------------------------------------------------------------
def pending_endpoint_transition(
    name: str, *, account: str = bus.DEFAULT_ACCOUNT, region: str = bus.DEFAULT_REGION
) -> Transition | None:
    """The transition SageMaker still owes the endpoint, or None (no such endpoint, or nothing to do)."""
    endpoint = _backend(account, region).endpoints.get(name)
    return None if endpoint is None else _pending(endpoint)


def endpoint_alarms_tripped(
    name: str, *, account: str = bus.DEFAULT_ACCOUNT, region: str = bus.DEFAULT_REGION
) -> list[str]:
    """Alarms of the running update's AutoRollbackConfiguration that are in ALARM now."""
    transition = pending_endpoint_transition(name, account=account, region=region)
    if transition is None or transition.kind != "update":
        return []
    return alarms_in_alarm(transition.alarms, account=account, region=region)


def _retained(old: dict[str, Any], new: dict[str, Any], exclude: tuple[str, ...]) -> dict[str, Any]:
    """RetainAllVariantProperties: a variant kept across the update keeps its weight and count."""
    merged = dict(new)
    if "DesiredWeight" not in exclude and "CurrentWeight" in old:
        merged["CurrentWeight"] = merged["DesiredWeight"] = old["CurrentWeight"]
    if "DesiredInstanceCount" not in exclude and "CurrentInstanceCount" in old and "CurrentInstanceCount" in new:
        merged["CurrentInstanceCount"] = merged["DesiredInstanceCount"] = old["CurrentInstanceCount"]
    return merged


def complete_endpoint_transition(
    name: str,
    *,
    account: str = bus.DEFAULT_ACCOUNT,
    region: str = bus.DEFAULT_REGION,
    token: int | None = None,
    deliver: bool = False,
    failure: str = "",
) -> dict[str, Any] | None:
    """Do what SageMaker still owes the endpoint; return the state-change event it emits.

    `failure`: the new variants' containers did not start (the simulator's health check says why, in
    SageMaker's words): a create ends `Failed` with it as FailureReason; an update leaves the endpoint
    InService on its previous config and variants with it as FailureReason, as SageMaker does with an
    UpdateEndpoint whose new fleet never becomes healthy (no RollingBack: that status is for failed
    UpdateEndpointWeightsAndCapacities). Other transitions ignore it.

    None when there is nothing to do (or `token` names a transition that is no longer the pending one),
    and when the endpoint's deletion completes (it is gone; nothing more is emitted). A transition may
    leave another one pending (an update whose alarms fired goes RollingBack, then InService): call
    again, or use `settle_endpoint`. With `deliver`, the event is also delivered to EventBridge before
    any API call can see the new state (so no later event can overtake it).
    """
    with _lock:
        event = _complete(name, account, region, token, failure)
        if deliver and event is not None:
            bus.deliver_event(event, account=account, region=region)
        return event


def _complete(name: str, account: str, region: str, token: int | None, failure: str = "") -> dict[str, Any] | None:
    backend = _backend(account, region)
    with _lock:
        endpoint = backend.endpoints.get(name)
        transition = None if endpoint is None else _pending(endpoint)
        if transition is None or (token is not None and transition.token != token):
            return None
        endpoint.sp_pending = None
        specs: list[dict[str, Any]] = getattr(endpoint, "sp_specs", [])
        if transition.kind == "delete":
            if backend.endpoints.get(name) is endpoint:
                del backend.endpoints[name]
            return None
        if transition.kind == "create":
            injected = (failure, False) if failure else _take_injected(name)
            if injected is not None:
                endpoint.failure_reason = injected[0] or _health_check_reason(specs)
                endpoint.production_variants = [
                    {k: v for k, v in variant.items() if k != "VariantStatus"}
                    for variant in endpoint.production_variants
                ]
                _set_status(endpoint, "Failed")
            else:
                endpoint.production_variants = [_serving_variant(s) for s in specs]
                endpoint.sp_shadow_variants = [_serving_variant(s) for s in getattr(endpoint, "sp_shadow_specs", [])]
                _set_status(endpoint, "InService")
        elif transition.kind == "weights":
            for variant in endpoint.production_variants:
                variant.pop("VariantStatus", None)
                variant["CurrentWeight"] = variant["DesiredWeight"]
                if "DesiredInstanceCount" in variant:
                    variant["CurrentInstanceCount"] = variant["DesiredInstanceCount"]
            _set_status(endpoint, "InService")
        elif transition.kind == "rollback":
            endpoint.sp_pending_specs = []
            endpoint.failure_reason = transition.reason
            _set_status(endpoint, "InService")
        elif failure and transition.kind == "update":
            # The new fleet never became healthy: the old one kept serving; nothing of the update stays.
            endpoint.sp_pending_specs = []
            endpoint.failure_reason = failure
            _set_status(endpoint, "InService")
        else:  # update
            tripped = alarms_in_alarm(transition.alarms, account=account, region=region)
            injected = None if tripped else _take_injected(name)
            if tripped or (injected is not None and injected[1]):
                reason = (
                    f"Rolled back the deployment of endpoint configuration {transition.config_name} because "
                    f"CloudWatch alarm(s) {', '.join(tripped)} went into ALARM state."
                    if tripped
                    else (injected[0] if injected is not None and injected[0] else "")
                )
                reason = reason or _health_check_reason(getattr(endpoint, "sp_pending_specs", []))
                _set_status(endpoint, "RollingBack")
                event = endpoint_event(name, account=account, region=region)
                _set_pending(backend, endpoint, Transition("rollback", next(_tokens), _now(), reason=reason))
                return event
            if injected is not None:
                endpoint.failure_reason = injected[0] or _health_check_reason(endpoint.sp_pending_specs)
                endpoint.sp_pending_specs = []
                _set_status(endpoint, "Failed")
            else:
                new_specs = endpoint.sp_pending_specs
                old_by_name = {v["VariantName"]: v for v in endpoint.production_variants}
                variants = []
                for spec in new_specs:
                    variant = _serving_variant(spec)
                    if transition.retain_all and spec["VariantName"] in old_by_name:
                        variant = _retained(old_by_name[spec["VariantName"]], variant, transition.exclude_retained)
                    variants.append(variant)
                endpoint.production_variants = variants
                shadow_specs = getattr(endpoint, "sp_pending_shadow_specs", [])
                endpoint.sp_shadow_variants = [_serving_variant(s) for s in shadow_specs]
                endpoint.sp_shadow_specs = shadow_specs
                endpoint.sp_pending_shadow_specs = []
                endpoint.endpoint_config_name = transition.config_name
                endpoint.sp_specs = new_specs
                endpoint.sp_pending_specs = []
                endpoint.failure_reason = None
                _set_status(endpoint, "InService")
        return endpoint_event(name, account=account, region=region)


def settle_endpoint(
    name: str, *, account: str = bus.DEFAULT_ACCOUNT, region: str = bus.DEFAULT_REGION
) -> list[dict[str, Any]]:
    """Complete transitions until none is pending; the events, in order (for tests)."""
    events = []
    while pending_endpoint_transition(name, account=account, region=region) is not None:
        event = complete_endpoint_transition(name, account=account, region=region)
        if event is not None:
            events.append(event)
    return events


# Installation ----------------------------------------------------------------------------------------
def install() -> None:
    backend_cls: Any = sm_models.SageMakerModelBackend
    backend_cls.create_endpoint_config = _create_endpoint_config(backend_cls.create_endpoint_config)
    backend_cls.describe_endpoint_config = _describe_endpoint_config
    backend_cls.delete_endpoint_config = _delete_endpoint_config
    backend_cls.create_endpoint = _create_endpoint
    backend_cls.describe_endpoint = _describe_endpoint
    backend_cls.delete_endpoint = _delete_endpoint
    backend_cls.update_endpoint = _update_endpoint
    backend_cls.update_endpoint_weights_and_capacities = _update_weights
    response_cls: Any = sm_responses.SageMakerResponse
    response_cls.update_endpoint = _response_update_endpoint
    response_cls.create_endpoint_config = _response_create_endpoint_config(response_cls.create_endpoint_config)
