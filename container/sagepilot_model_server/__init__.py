"""A small model server that follows SageMaker's inference container contract (/ping, /invocations).

Models are `model.tar.gz` archives holding the model file(s) and `code/inference.py` with `model_fn`,
and optionally `input_fn`, `predict_fn`, `output_fn` (or `transform_fn`), as SageMaker's framework
containers expect. See container/README.md.
"""

from __future__ import annotations

from sagepilot_model_server.errors import (
    BadRequest,
    ModelError,
    ModelServerError,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedContentType,
)
from sagepilot_model_server.handler import (
    InferenceHandler,
    ModelSource,
    download_model_data,
    extract_model_archive,
    load_handler,
    load_model,
    resolve_model_source,
)
from sagepilot_model_server.server import ModelServer, ModelStatus, start_server

__all__ = [
    "BadRequest",
    "InferenceHandler",
    "ModelError",
    "ModelServer",
    "ModelServerError",
    "ModelSource",
    "ModelStatus",
    "NotAcceptable",
    "PayloadTooLarge",
    "UnsupportedContentType",
    "download_model_data",
    "extract_model_archive",
    "load_handler",
    "load_model",
    "resolve_model_source",
    "start_server",
]
