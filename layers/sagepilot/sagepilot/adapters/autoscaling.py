"""Application Auto Scaling for endpoint variants: target tracking on invocations per instance.

SageMaker refuses to remove a variant (or change its instance type) while it is registered as a
scalable target, so `deregister` always runs before such an update. Both calls are idempotent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import error_code, translates_unreachable
from sagepilot.domain.deployment import Autoscaling
from sagepilot.domain.names import scalable_target_id, scaling_policy_name
from sagepilot.errors import PermanentError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_application_autoscaling.type_defs import ScalableTargetTypeDef

# Final: their literal values are what the typed client accepts (ServiceNamespace, ScalableDimension, ...).
NAMESPACE: Final = "sagemaker"
DIMENSION: Final = "sagemaker:variant:DesiredInstanceCount"
METRIC: Final = "SageMakerVariantInvocationsPerInstance"
_THROTTLED = {"ThrottlingException", "ConcurrentUpdateException", "InternalServiceException"}


def _translate(exc: ClientError, what: str) -> Exception:
    if error_code(exc) in _THROTTLED:
        return TransientError(f"{what}: {exc}")
    return PermanentError(f"{what}: {exc}")


@translates_unreachable
class VariantAutoscaling:
    def __init__(self, autoscaling_client: ApplicationAutoScalingClient) -> None:
        self._aas = autoscaling_client

    def register(self, endpoint: str, variant: str, policy: Autoscaling) -> None:
        rid = scalable_target_id(endpoint, variant)
        try:
            self._aas.register_scalable_target(
                ServiceNamespace=NAMESPACE,
                ResourceId=rid,
                ScalableDimension=DIMENSION,
                MinCapacity=policy.min_capacity,
                MaxCapacity=policy.max_capacity,
            )
            self._aas.put_scaling_policy(
                PolicyName=scaling_policy_name(endpoint, variant),
                ServiceNamespace=NAMESPACE,
                ResourceId=rid,
                ScalableDimension=DIMENSION,
                PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration={
                    "TargetValue": policy.target_invocations,
                    "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
                    "ScaleInCooldown": policy.scale_in_cooldown,
                    "ScaleOutCooldown": policy.scale_out_cooldown,
                },
            )
        except ClientError as exc:
            raise _translate(exc, f"registering autoscaling for {rid}") from exc

    def deregister(self, endpoint: str, variant: str) -> None:
        rid = scalable_target_id(endpoint, variant)
        try:
            self._aas.delete_scaling_policy(
                PolicyName=scaling_policy_name(endpoint, variant),
                ServiceNamespace=NAMESPACE,
                ResourceId=rid,
                ScalableDimension=DIMENSION,
            )
        except ClientError as exc:
            if error_code(exc) != "ObjectNotFoundException":
                raise _translate(exc, f"deleting the scaling policy of {rid}") from exc
        try:
            self._aas.deregister_scalable_target(
                ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION
            )
        except ClientError as exc:
            if error_code(exc) != "ObjectNotFoundException":
                raise _translate(exc, f"deregistering {rid}") from exc

    def own_settings(self, endpoint: str, variant: str, policy: Autoscaling) -> str:
        """What of the variant's scaling a person set themselves (min/max other than the stack's, scaling
        policies other than the stack's), in words; "" when there is nothing (or no scalable target)."""
        rid = scalable_target_id(endpoint, variant)
        try:
            targets = self._aas.describe_scalable_targets(
                ServiceNamespace=NAMESPACE, ResourceIds=[rid], ScalableDimension=DIMENSION
            )["ScalableTargets"]
            if not targets:
                return ""
            policies = self._aas.describe_scaling_policies(
                ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION
            )["ScalingPolicies"]
        except ClientError as exc:
            raise _translate(exc, f"reading the scaling settings of {rid}") from exc
        found = []
        low, high = int(targets[0]["MinCapacity"]), int(targets[0]["MaxCapacity"])
        if (low, high) != (policy.min_capacity, policy.max_capacity):
            found.append(f"min/max capacity {low}/{high} (the stack's: {policy.min_capacity}/{policy.max_capacity})")
        own = sorted(
            str(p["PolicyName"]) for p in policies if p["PolicyName"] != scaling_policy_name(endpoint, variant)
        )
        if own:
            found.append(f"scaling policies {', '.join(own)}")
        return "; ".join(found)

    def registered(self, endpoint: str) -> dict[str, ScalableTargetTypeDef]:
        """Scalable targets of an endpoint's variants, by variant name (for checks and the CLI)."""
        prefix = f"endpoint/{endpoint}/variant/"
        found: dict[str, ScalableTargetTypeDef] = {}
        try:
            pages = self._aas.get_paginator("describe_scalable_targets").paginate(ServiceNamespace=NAMESPACE)
            for page in pages:
                for target in page["ScalableTargets"]:
                    if target["ResourceId"].startswith(prefix):
                        found[target["ResourceId"][len(prefix) :]] = target
        except ClientError as exc:
            raise _translate(exc, "listing scalable targets") from exc
        return found

    def minimum(self, endpoint: str, variant: str) -> int | None:
        """The registered scalable target's MinCapacity, or None if the variant is not registered."""
        try:
            found = self._aas.describe_scalable_targets(
                ServiceNamespace=NAMESPACE,
                ResourceIds=[scalable_target_id(endpoint, variant)],
                ScalableDimension=DIMENSION,
            )["ScalableTargets"]
        except ClientError as exc:
            raise _translate(exc, f"reading the scalable target of {endpoint}/{variant}") from exc
        return int(found[0]["MinCapacity"]) if found else None
