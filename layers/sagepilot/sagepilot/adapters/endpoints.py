"""SageMaker real-time endpoints: models, endpoint configs, endpoints and their variants' weights.

Idempotent by names: configs and models are named after what they hold, so asking again for one that
exists is success. An endpoint that is not InService refuses updates with "Cannot update in-progress
endpoint"; that surfaces as `EndpointBusy`, which the rollout treats as "wait for the next event" -
unless the endpoint is busy with the very change asked for: UpdateEndpoint and
UpdateEndpointWeightsAndCapacities have no client token, so when the response to an accepted call is
lost, botocore's retry is refused as in progress; DescribeEndpoint then shows our config pending (or
live), or our desired weights / counts, and the call counts as done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import error_code, error_message, translates_unreachable
from sagepilot.adapters.sagemaker import SageMaker, translate
from sagepilot.domain.rollout import EndpointView, VariantView
from sagepilot.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker.type_defs import ProductionVariantSummaryTypeDef


class EndpointBusy(TransientError):
    """The endpoint is Creating/Updating; SageMaker accepts no update until it is InService again."""


def _busy(exc: ClientError) -> bool:
    return error_code(exc) == "ValidationException" and "in-progress endpoint" in error_message(exc)


def _missing(exc: ClientError) -> bool:
    return error_code(exc) in ("ValidationException", "ResourceNotFound") and (
        "Could not find" in error_message(exc) or "does not exist" in error_message(exc)
    )


def _already_exists(exc: ClientError) -> bool:
    return error_code(exc) in ("ValidationException", "ResourceInUse") and "already exist" in error_message(exc)


@translates_unreachable
class Endpoints:
    def __init__(self, sagemaker_client: SageMakerClient, role_arn: str) -> None:
        self._sm = sagemaker_client
        self._models = SageMaker(sagemaker_client)
        self._role = role_arn

    def describe(self, name: str) -> EndpointView | None:
        try:
            found = self._sm.describe_endpoint(EndpointName=name)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise translate(exc, f"DescribeEndpoint {name}") from exc
        modified = found.get("LastModifiedTime")

        def views(summaries: Sequence[ProductionVariantSummaryTypeDef]) -> tuple[VariantView, ...]:
            return tuple(
                VariantView(
                    name=str(v["VariantName"]),
                    weight=float(v.get("CurrentWeight") or 0.0),
                    instances=v.get("CurrentInstanceCount"),
                )
                for v in summaries
            )

        return EndpointView(
            status=str(found["EndpointStatus"]),
            config_name=str(found.get("EndpointConfigName", "")),
            variants=views(found.get("ProductionVariants") or ()),
            last_modified=modified.timestamp() if hasattr(modified, "timestamp") else 0.0,
            failure_reason=str(found.get("FailureReason", "")),
            shadows=views(found.get("ShadowProductionVariants") or ()),
        )

    def statuses(self, prefix: str) -> dict[str, str]:
        """EndpointStatus of every endpoint whose name starts with `prefix` (one ListEndpoints walk)."""
        found: dict[str, str] = {}
        try:
            for page in self._sm.get_paginator("list_endpoints").paginate(NameContains=prefix):
                for summary in page.get("Endpoints", ()):
                    name = str(summary["EndpointName"])
                    if name.startswith(prefix):
                        found[name] = str(summary["EndpointStatus"])
        except ClientError as exc:
            raise translate(exc, f"ListEndpoints {prefix}") from exc
        return found

    def ensure_model(self, name: str, package_arn: str) -> bool:
        return self._models.ensure_model(name, package_arn, self._role)

    def ensure_config(
        self,
        name: str,
        variants: Sequence[Mapping[str, Any]],
        tags: Mapping[str, str],
        shadows: Sequence[Mapping[str, Any]] = (),
    ) -> bool:
        """CreateEndpointConfig; True if created, False if a config of that name already existed. `shadows`:
        its ShadowProductionVariants (SageMaker allows one, beside exactly one production variant; the shadow's
        weight relative to the production variant's is the share of requests copied to it)."""
        request: dict[str, Any] = {
            "EndpointConfigName": name,
            "ProductionVariants": [dict(v) for v in variants],
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }
        if shadows:
            request["ShadowProductionVariants"] = [dict(v) for v in shadows]
        try:
            self._sm.create_endpoint_config(**request)
        except ClientError as exc:
            if _already_exists(exc):
                return False
            raise translate(exc, f"CreateEndpointConfig {name}", str(variants[0].get("InstanceType", ""))) from exc
        return True

    def create(self, name: str, config: str, tags: Mapping[str, str]) -> bool:
        try:
            self._sm.create_endpoint(
                EndpointName=name, EndpointConfigName=config, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            )
        except ClientError as exc:
            if _already_exists(exc):
                return False
            raise translate(exc, f"CreateEndpoint {name}") from exc
        return True

    def update(self, name: str, config: str, deployment: Mapping[str, Any] | None = None) -> None:
        request: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": config}
        if deployment:
            request["DeploymentConfig"] = dict(deployment)
        try:
            self._sm.update_endpoint(**request)
        except ClientError as exc:
            if _busy(exc):
                if self._moving_to_config(name, config):
                    return  # our own update, accepted by an attempt whose response was lost
                raise EndpointBusy(f"endpoint {name} is being updated") from exc
            raise translate(exc, f"UpdateEndpoint {name}") from exc

    def _moving_to_config(self, name: str, config: str) -> bool:
        """The endpoint is updating to `config` (or has just finished doing so)."""
        found = self._describe_raw(name)
        if found is None:
            return False
        pending = (found.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
        if pending:
            return bool(pending == config)
        return found.get("EndpointStatus") == "InService" and found.get("EndpointConfigName") == config

    def _has_desired(self, name: str, wanted: Mapping[str, Mapping[str, float]]) -> bool:
        """Every variant in `wanted` already has those Desired* values (a lost response's change)."""
        found = self._describe_raw(name)
        if found is None or found.get("EndpointStatus") == "Failed" or found.get("PendingDeploymentSummary"):
            return False  # gone, failed, or busy with an UpdateEndpoint (not a change of weights / counts)
        variants = {str(v["VariantName"]): v for v in found.get("ProductionVariants") or ()}
        for variant, values in wanted.items():
            have = variants.get(variant)
            if have is None:
                return False
            for key, value in values.items():
                if have.get(key) is None or abs(float(have[key]) - float(value)) > 1e-9:
                    return False
        return True

    def _describe_raw(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self._sm.describe_endpoint(EndpointName=name))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise translate(exc, f"DescribeEndpoint {name}") from exc

    def set_weights(self, name: str, weights: Iterable[tuple[str, float]]) -> None:
        wanted = {v: {"DesiredWeight": w} for v, w in weights}
        try:
            self._sm.update_endpoint_weights_and_capacities(
                EndpointName=name,
                DesiredWeightsAndCapacities=[
                    {"VariantName": v, "DesiredWeight": d["DesiredWeight"]} for v, d in wanted.items()
                ],
            )
        except ClientError as exc:
            if _busy(exc):
                if self._has_desired(name, wanted):
                    return  # our own change, accepted by an attempt whose response was lost
                raise EndpointBusy(f"endpoint {name} is being updated") from exc
            raise translate(exc, f"UpdateEndpointWeightsAndCapacities {name}") from exc

    def delete(self, name: str) -> None:
        try:
            self._sm.delete_endpoint(EndpointName=name)
        except ClientError as exc:
            if not _missing(exc):
                raise translate(exc, f"DeleteEndpoint {name}") from exc

    def delete_config(self, name: str) -> None:
        try:
            self._sm.delete_endpoint_config(EndpointConfigName=name)
        except ClientError as exc:
            if not _missing(exc):
                raise translate(exc, f"DeleteEndpointConfig {name}") from exc

    def delete_model(self, name: str) -> None:
        try:
            self._sm.delete_model(ModelName=name)
        except ClientError as exc:
            if not _missing(exc):
                raise translate(exc, f"DeleteModel {name}") from exc

    def set_capacity(self, name: str, variant: str, instances: int) -> None:
        """UpdateEndpointWeightsAndCapacities with the variant's DesiredInstanceCount only."""
        try:
            self._sm.update_endpoint_weights_and_capacities(
                EndpointName=name,
                DesiredWeightsAndCapacities=[{"VariantName": variant, "DesiredInstanceCount": instances}],
            )
        except ClientError as exc:
            if _busy(exc):
                if self._has_desired(name, {variant: {"DesiredInstanceCount": instances}}):
                    return  # our own change, accepted by an attempt whose response was lost
                raise EndpointBusy(f"endpoint {name} is being updated") from exc
            raise translate(exc, f"UpdateEndpointWeightsAndCapacities {name}") from exc
