"""Application Auto Scaling's refusals and clean-up as AWS does them (moto differs).

- DeregisterScalableTarget of a target that does not exist, and PutScalingPolicy on one, raise
  `ObjectNotFoundException` ("No scalable target registered for service namespace: ..., resource
  ID: ..., scalable dimension: ..."); DeleteScalingPolicy of a missing policy raises
  `ObjectNotFoundException` too. moto raises ValidationException for the first and last, and accepts
  the second.
- DeregisterScalableTarget deletes the target's scaling policies (and their alarms), as its
  documentation says; moto leaves them behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.applicationautoscaling import models as aas_models
from moto.core.exceptions import JsonRESTError


class ObjectNotFoundException(JsonRESTError):
    def __init__(self, message: str) -> None:
        super().__init__("ObjectNotFoundException", message)


def _no_target(namespace: str, resource_id: str, dimension: str) -> ObjectNotFoundException:
    return ObjectNotFoundException(
        f"No scalable target registered for service namespace: {namespace}, resource ID: {resource_id}, "
        f"scalable dimension: {dimension}"
    )


def _deregister(self: Any, namespace: str, r_id: str, dimension: str) -> None:
    target = self.targets.get(dimension, {}).get(r_id)
    if target is None or target.service_namespace != namespace:
        raise _no_target(namespace, r_id, dimension)
    for key, policy in list(self.policies.items()):
        if (policy.service_namespace, policy.resource_id, policy.scalable_dimension) == (namespace, r_id, dimension):
            policy.delete_alarms(self.account_id, self.region_name)
            del self.policies[key]
    del self.targets[dimension][r_id]


def _put_scaling_policy(original: Callable[..., Any]) -> Callable[..., Any]:
    def put_scaling_policy(
        self: Any, policy_name: str, service_namespace: str, resource_id: str, scalable_dimension: str, **kwargs: Any
    ) -> Any:
        target = self.targets.get(scalable_dimension, {}).get(resource_id)
        if target is None or target.service_namespace != service_namespace:
            raise _no_target(service_namespace, resource_id, scalable_dimension)
        return original(
            self,
            policy_name=policy_name,
            service_namespace=service_namespace,
            resource_id=resource_id,
            scalable_dimension=scalable_dimension,
            **kwargs,
        )

    return put_scaling_policy


def _delete_scaling_policy(
    self: Any, policy_name: str, service_namespace: str, resource_id: str, scalable_dimension: str
) -> None:
    dimension = scalable_dimension
    key = aas_models.FakeApplicationAutoscalingPolicy.formulate_key(
        service_namespace, resource_id, dimension, policy_name
    )
    policy = self.policies.pop(key, None)
    if policy is None:
        raise ObjectNotFoundException(
            f"No scaling policy found for service namespace: {service_namespace}, resource ID: {resource_id}, "
            f"scalable dimension: {dimension}, policy name: {policy_name}"
        )
    policy.delete_alarms(self.account_id, self.region_name)


def install() -> None:
    backend_cls: Any = aas_models.ApplicationAutoscalingBackend
    backend_cls.deregister_scalable_target = _deregister
    backend_cls.put_scaling_policy = _put_scaling_policy(backend_cls.put_scaling_policy)
    backend_cls.delete_scaling_policy = _delete_scaling_policy
