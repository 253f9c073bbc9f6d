"""Builds each use case from settings and boto3 clients: the handlers' one-liner, the tests' too.

Every builder imports its own service and adapters inside its body, not at the top of this module: each
Lambda function imports this module at its cold start, and a top-level import of every service would make
each function load (and, without bytecode, compile) the code of all the others. Only the types the
signatures name are imported at the top, for the type checker alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sagepilot.clock import epoch

if TYPE_CHECKING:
    from sagepilot.adapters.clients import ClientFactory
    from sagepilot.metrics import Recorder
    from sagepilot.services.batch_completion import BatchCompletion
    from sagepilot.services.batch_intake import BatchIntake
    from sagepilot.services.holding import GroupHold
    from sagepilot.services.jobs import JobLauncher
    from sagepilot.services.rollout import Rollouts
    from sagepilot.services.training import Training
    from sagepilot.settings import RolloutSettings, Settings, TrainingSettings


def _launcher(settings: Settings, client: ClientFactory) -> JobLauncher:
    # Imported here, not at the top: the batch functions need these; the rollout and training ones do not.
    from sagepilot.adapters.notify import Notifier
    from sagepilot.adapters.registry import ModelRegistry
    from sagepilot.adapters.s3 import DataBucket
    from sagepilot.adapters.sagemaker import SageMaker
    from sagepilot.adapters.state import StateTable
    from sagepilot.services.jobs import JobLauncher

    return JobLauncher(
        settings,
        DataBucket(client("s3"), settings.data_bucket),
        SageMaker(client("sagemaker")),
        StateTable(client("dynamodb"), settings.state_table),
        registry=ModelRegistry(client("sagemaker")),
        notifier=Notifier(client("sns"), settings.notification_topic_arn),
    )


def batch_intake(settings: Settings, client: ClientFactory, metrics: Recorder | None = None) -> BatchIntake:
    # Imported here, not at the top: only the intake function's cold start should load the intake's code.
    from sagepilot.adapters.notify import Notifier
    from sagepilot.adapters.registry import ModelRegistry
    from sagepilot.adapters.s3 import DataBucket
    from sagepilot.services.batch_intake import BatchIntake

    launcher = _launcher(settings, client)
    return BatchIntake(
        settings,
        DataBucket(client("s3"), settings.data_bucket),
        ModelRegistry(client("sagemaker")),
        launcher,
        Notifier(client("sns"), settings.notification_topic_arn),
        metrics=metrics,
        hold=_hold(settings, client, launcher, with_queue=True),
    )


def _hold(settings: Settings, client: ClientFactory, launcher: JobLauncher, *, with_queue: bool) -> GroupHold | None:
    """The start-up hold (services/holding.py) when HOLD_SECONDS is set: the intake sends itself the delayed
    releases (on the hold release queue) and looks at its own queue's backlog; the completion's sweep only releases
    what is due."""
    if not settings.hold.enabled:
        return None
    from sagepilot.adapters.delayed import DelayedQueue
    from sagepilot.adapters.s3 import DataBucket
    from sagepilot.adapters.state import StateTable
    from sagepilot.errors import ConfigurationError
    from sagepilot.services.holding import GroupHold

    releases = intake = None
    if with_queue:
        for name, value in (
            ("INTAKE_QUEUE_URL", settings.intake_queue_url),
            ("HOLD_RELEASE_QUEUE_URL", settings.hold_release_queue_url),
        ):
            if not value:
                raise ConfigurationError(f"environment variable {name} is required when HOLD_SECONDS is set")
        releases = DelayedQueue(client("sqs"), settings.hold_release_queue_url)
        intake = DelayedQueue(client("sqs"), settings.intake_queue_url)
    return GroupHold(
        settings,
        StateTable(client("dynamodb"), settings.state_table),
        DataBucket(client("s3"), settings.data_bucket),
        launcher,
        releases,
        intake,
    )


def batch_completion(settings: Settings, client: ClientFactory, metrics: Recorder | None = None) -> BatchCompletion:
    # Imported here, not at the top: only the completion function's cold start should load its code.
    from sagepilot.adapters.notify import Notifier
    from sagepilot.adapters.s3 import DataBucket
    from sagepilot.adapters.sagemaker import SageMaker
    from sagepilot.adapters.state import StateTable
    from sagepilot.services.batch_completion import BatchCompletion

    launcher = _launcher(settings, client)
    return BatchCompletion(
        settings,
        DataBucket(client("s3"), settings.data_bucket),
        SageMaker(client("sagemaker")),
        StateTable(client("dynamodb"), settings.state_table),
        launcher,
        Notifier(client("sns"), settings.notification_topic_arn),
        metrics=metrics,
        hold=_hold(settings, client, launcher, with_queue=False),
    )


def rollouts(
    settings: RolloutSettings,
    client: ClientFactory,
    clock: Callable[[], float] = epoch,
    metrics: Recorder | None = None,
) -> Rollouts:
    # Imported here, not at the top: only the rollout function's cold start should load the rollout's code.
    from sagepilot.adapters.alarms import VariantAlarms
    from sagepilot.adapters.autoscaling import VariantAutoscaling
    from sagepilot.adapters.endpoints import Endpoints
    from sagepilot.adapters.notify import Notifier
    from sagepilot.adapters.registry import ModelRegistry
    from sagepilot.adapters.rollout_reports import RolloutReports
    from sagepilot.adapters.rollout_state import RolloutStore
    from sagepilot.metrics import NoRecorder
    from sagepilot.services.endpoint_health import EndpointHealth
    from sagepilot.services.rollout import Rollouts

    sagemaker = client("sagemaker")
    endpoints = Endpoints(sagemaker, settings.sagemaker_role_arn)
    autoscaling = VariantAutoscaling(client("application-autoscaling"))
    alarms = VariantAlarms(client("cloudwatch"))
    notifier = Notifier(client("sns"), settings.notification_topic_arn)
    recorder = metrics or NoRecorder()
    return Rollouts(
        settings,
        RolloutStore(client("dynamodb"), settings.state_table, settings.lease_seconds),
        ModelRegistry(sagemaker),
        endpoints,
        autoscaling,
        alarms,
        notifier,
        EndpointHealth(endpoints, autoscaling, alarms, notifier, recorder),
        clock,
        recorder,
        RolloutReports(client("s3"), settings.report_bucket) if settings.report_bucket else None,
    )


def training(settings: TrainingSettings, client: ClientFactory, metrics: Recorder | None = None) -> Training:
    # Imported here, not at the top: only the training function's cold start should load the training code.
    from sagepilot.adapters.delayed import DelayedQueue
    from sagepilot.adapters.notify import Notifier
    from sagepilot.adapters.registry import ModelRegistry
    from sagepilot.adapters.s3 import DataBucket
    from sagepilot.adapters.sagemaker import SageMaker
    from sagepilot.adapters.state import StateTable
    from sagepilot.metrics import NoRecorder
    from sagepilot.services.training import Training

    return Training(
        settings,
        DataBucket(client("s3"), settings.data_bucket),
        SageMaker(client("sagemaker")),
        ModelRegistry(client("sagemaker")),
        StateTable(client("dynamodb"), settings.state_table),
        Notifier(client("sns"), settings.notification_topic_arn),
        metrics or NoRecorder(),
        DelayedQueue(client("sqs"), settings.settle_queue_url),
    )
