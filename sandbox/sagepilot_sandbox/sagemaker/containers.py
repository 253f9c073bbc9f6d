"""What SageMaker starts for a model: its artifact, the container's Environment, read as its execution role.

`resolve_container(model_name)` reads CreateModel's definition as SageMaker does: the artifact
(`modelservers.resolve_model_data_url`), the container's `Environment` (a model package's container
Environment, overlaid by the model's own), and the model's `ExecutionRoleArn`. Before anything runs:

- the role must be allowed to read the artifact (`modelservers.resolve_model_data_url`, `roles`), else
  the model cannot be served, with SageMaker's download failure (`ModelUnavailable`); an `https://` URL
  is refused the same way (the sandbox downloads from its own S3 only);
- a `SAGEMAKER_SUBMIT_DIRECTORY` in S3 (the `sourcedir.tar.gz` the SDK uploads for an `entry_point` /
  `source_dir`) is read as the role too and handed to the model server as a local file, as the
  framework container downloads it at start-up; the server then imports `SAGEMAKER_PROGRAM` from it.

What an endpoint's containers need before they start is checked by `check_image` (the role must be
allowed to pull the container's ECR image, else `ImageNotPullable`) and `check_artifact_exists` (an
artifact that is not there is SageMaker's download failure, `CannotDownload`).

Each copy is named by the object's ETag, so a new upload under the same URI starts a new server.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto.sagemaker.models import sagemaker_backends

from sagepilot_sandbox import storage
from sagepilot_sandbox.bus import DEFAULT_ACCOUNT, DEFAULT_REGION
from sagepilot_sandbox.sagemaker import roles
from sagepilot_sandbox.sagemaker.modelservers import (
    CannotDownload,
    ModelUnavailable,
    download_failure,
    resolve_model_data_url,
)

SUBMIT_DIRECTORY = "SAGEMAKER_SUBMIT_DIRECTORY"

_lock = threading.Lock()
_work_dir: Path | None = None


@dataclass(frozen=True)
class ModelContainer:
    model_data_url: str
    environment: dict[str, str] = field(default_factory=dict)  # as the model server gets it
    role_arn: str = ""


def _container_definition(model_name: str, account: str, region: str) -> tuple[dict[str, Any], str]:
    backend = sagemaker_backends[account][region]
    model = backend._models.get(model_name)
    if model is None:
        raise ModelUnavailable(f'Could not find model "{model_name}".')
    container = dict(model.primary_container or (model.containers[0] if model.containers else {}))
    environment: dict[str, str] = {}
    package_name = container.get("ModelPackageName")
    if package_name:
        package = backend.model_packages.get(backend.model_package_name_mapping.get(package_name, package_name))
        spec_containers = ((package.inference_specification or {}) if package else {}).get("Containers") or []
        if spec_containers:
            environment.update(spec_containers[0].get("Environment") or {})
    environment.update(container.get("Environment") or {})
    return environment, str(model.execution_role_arn or "")


class ImageNotPullable(ModelUnavailable):
    """The model's execution role may not pull its image from ECR: `reason` is the role's denial."""

    def __init__(self, image: str, denial: str) -> None:
        super().__init__(denial)
        self.image = image

    def endpoint_failure(self, variant: str) -> str:
        """An endpoint's FailureReason for it (SageMaker's words, observed), with the denial."""
        return (
            f"Please make sure all images included in the model for the production variant {variant} exist, and "
            f"that the execution role used to create the model has permissions to access them. ({self.reason})"
        )

    def job_failure(self) -> str:
        """A transform job's FailureReason for it (inferred from the endpoint's), with the denial."""
        return (
            "Please make sure all images included in the model exist, and that the execution role used to create "
            f"the model has permissions to access them. ({self.reason})"
        )


def model_image(model_name: str, *, account: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION) -> str:
    """The image SageMaker pulls for the model: its container's, or its model package's container's."""
    backend = sagemaker_backends[account][region]
    model = backend._models.get(model_name)
    if model is None:
        raise ModelUnavailable(f'Could not find model "{model_name}".')
    container = dict(model.primary_container or (model.containers[0] if model.containers else {}))
    if container.get("Image"):
        return str(container["Image"])
    package_name = container.get("ModelPackageName")
    if package_name:
        package = backend.model_packages.get(backend.model_package_name_mapping.get(package_name, package_name))
        spec_containers = ((package.inference_specification or {}) if package else {}).get("Containers") or []
        if spec_containers and spec_containers[0].get("Image"):
            return str(spec_containers[0]["Image"])
    return ""


def check_image(model_name: str, *, account: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION) -> None:
    """ImageNotPullable unless the model's execution role may pull its image (`roles.check_image_pull`)."""
    image = model_image(model_name, account=account, region=region)
    role = execution_role(model_name, account=account, region=region)
    if not image or not role:
        return
    try:
        roles.check_image_pull(role, image, account=account)
    except roles.AccessDenied as denied:
        raise ImageNotPullable(image, denied.reason) from None


def check_artifact_exists(container: ModelContainer, *, account: str = DEFAULT_ACCOUNT) -> None:
    """CannotDownload, with SageMaker's download failure, when there is no object at the model's artifact URL."""
    try:
        bucket, key = storage.parse_uri(container.model_data_url)
        storage.head(bucket, key, account=account)
    except (ValueError, storage.NotFound):
        raise CannotDownload(download_failure(container.model_data_url)) from None


def execution_role(model_name: str, *, account: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION) -> str | None:
    """The model's ExecutionRoleArn (what its transform jobs read and write as); None for an unknown model."""
    model = sagemaker_backends[account][region]._models.get(model_name)
    return str(model.execution_role_arn) if model is not None and model.execution_role_arn else None


def resolve_container(
    model_name: str, *, account: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION
) -> ModelContainer:
    """The model's artifact and environment, checked against its role (see the module docstring)."""
    url = resolve_model_data_url(model_name, account=account, region=region)  # read as the role
    environment, role_arn = _container_definition(model_name, account, region)
    submit = environment.get(SUBMIT_DIRECTORY, "")
    if submit.startswith(("s3://", "https://")):
        environment[SUBMIT_DIRECTORY] = str(_local_copy(role_arn, submit, account))
    return ModelContainer(url, {k: str(v) for k, v in environment.items()}, role_arn)


def _check_readable(role_arn: str, url: str, account: str) -> None:
    try:
        bucket, key = storage.parse_uri(url)
    except ValueError:
        raise ModelUnavailable(download_failure(url)) from None
    try:
        roles.check_read(role_arn, bucket, key, account=account)
    except roles.AccessDenied as denied:
        raise CannotDownload(f"{download_failure(url)} ({denied.reason})") from None


def _local_copy(role_arn: str, uri: str, account: str) -> Path:
    _check_readable(role_arn, uri, account)
    bucket, key = storage.parse_uri(uri)
    try:
        found = storage.head(bucket, key, account=account)
    except storage.NotFound:
        raise CannotDownload(
            f'Failed to download the sources {uri} ({SUBMIT_DIRECTORY}) for container "container_1": there is '
            "no object at the URL. Please ensure that the role passed to CreateModel has permissions to download it."
        ) from None
    digest = hashlib.sha256(f"{uri}#{found.etag}".encode()).hexdigest()[:16]
    target = _directory() / digest / "sourcedir.tar.gz"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_bytes(bytes(found.value))
        partial.replace(target)
    return target


def _directory() -> Path:
    global _work_dir
    with _lock:
        if _work_dir is None:
            _work_dir = Path(tempfile.mkdtemp(prefix="sagepilot-sandbox-sources-"))
            atexit.register(shutil.rmtree, _work_dir, True)
        return _work_dir
