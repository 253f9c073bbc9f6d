"""Errors that map to an HTTP status: raise one from `input_fn`, `predict_fn` or `output_fn` to answer with
that status and message (anything else raised by user code is answered with 500)."""

from __future__ import annotations


class ModelServerError(Exception):
    """An error the client should see as `status` with `message` (a sentence that says what was wrong)."""

    status = 500
    code = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ModelServerError):
    """The request body cannot be read as records (bad numbers, ragged rows, wrong number of features...)."""

    status = 400
    code = "BadRequest"


class LengthRequired(ModelServerError):
    status = 411
    code = "LengthRequired"


class PayloadTooLarge(ModelServerError):
    status = 413
    code = "PayloadTooLarge"


class UnsupportedContentType(ModelServerError):
    status = 415
    code = "UnsupportedMediaType"


class NotAcceptable(ModelServerError):
    status = 406
    code = "NotAcceptable"


class ModelNotReady(ModelServerError):
    """The model is still loading: retry later."""

    status = 503
    code = "ModelLoading"


class ModelLoadFailed(ModelServerError):
    """The model could not be loaded: the container is unhealthy and will stay so."""

    status = 500
    code = "ModelLoadFailed"


class ModelError(ModelServerError):
    """User code (`input_fn`, `predict_fn`, `output_fn`, `transform_fn`) raised an unexpected exception."""

    status = 500
    code = "ModelError"
