"""Builds each use case from settings and boto3 clients: the handlers' one-liner, the tests' too."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sagepilot.adapters.alarms import VariantAlarms
from sagepilot.adapters.autoscaling import VariantAutoscaling
from sagepilot.adapters.endpoints import Endpoints
from sagepilot.adapters.notify import Notifier
from sagepilot.adapters.registry import ModelRegistry
from sagepilot.adapters.rollout_state import RolloutStore
from sagepilot.adapters.s3 import DataBucket
from sagepilot.adapters.sagemaker import SageMaker
from sagepilot.adapters.state import StateTable
from sagepilot.metrics import NoRecorder, Recorder
from sagepilot.services.batch_completion import BatchCompletion
from sagepilot.services.batch_intake import BatchIntake
from sagepilot.services.jobs import JobLauncher
from sagepilot.services.rollout import Rollouts
from sagepilot.services.training import Training
from sagepilot.settings import RolloutSettings, Settings, TrainingSettings

ClientFactory = Callable[[str], Any]


def _launcher(settings: Settings, client: ClientFactory) -> JobLauncher:
    return JobLauncher(
        settings,
        DataBucket(client("s3"), settings.data_bucket),
        SageMaker(client("sagemaker")),
        StateTable(client("dynamodb"), settings.state_table),
    )


def batch_intake(settings: Settings, client: ClientFactory) -> BatchIntake:
    return BatchIntake(
        settings,
        DataBucket(client("s3"), settings.data_bucket),
        ModelRegistry(client("sagemaker")),
        _launcher(settings, client),
        Notifier(client("sns"), settings.notification_topic_arn),
    )


def batch_completion(settings: Settings, client: ClientFactory) -> BatchCompletion:
    return BatchCompletion(
        settings,
        DataBucket(client("s3"), settings.data_bucket),
        SageMaker(client("sagemaker")),
        StateTable(client("dynamodb"), settings.state_table),
        _launcher(settings, client),
        Notifier(client("sns"), settings.notification_topic_arn),
    )


def rollouts(
    settings: RolloutSettings,
    client: ClientFactory,
    clock: Callable[[], float] = time.time,
    metrics: Recorder | None = None,
) -> Rollouts:
    sagemaker = client("sagemaker")
    return Rollouts(
        settings,
        RolloutStore(client("dynamodb"), settings.state_table, settings.lease_seconds),
        ModelRegistry(sagemaker),
        Endpoints(sagemaker, settings.sagemaker_role_arn),
        VariantAutoscaling(client("application-autoscaling")),
        VariantAlarms(client("cloudwatch")),
        Notifier(client("sns"), settings.notification_topic_arn),
        clock,
        metrics or NoRecorder(),
    )


def training(settings: TrainingSettings, client: ClientFactory, metrics: Recorder | None = None) -> Training:
    return Training(
        settings,
        DataBucket(client("s3"), settings.data_bucket),
        client("s3"),
        SageMaker(client("sagemaker")),
        ModelRegistry(client("sagemaker")),
        StateTable(client("dynamodb"), settings.state_table),
        Notifier(client("sns"), settings.notification_topic_arn),
        metrics or NoRecorder(),
    )
