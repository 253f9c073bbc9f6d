"""Loading a model the way SageMaker's framework containers do, and running one request through it.

A model is the content of a `model.tar.gz`: the model file(s) plus `code/inference.py` (the name can be
changed with `SAGEMAKER_PROGRAM`), a module with

- `model_fn(model_dir)` -> model (required, unless the archive holds a `model.joblib`/`model.pkl`),
- `input_fn(body, content_type)` -> data (optional; default: CSV / JSON / JSON Lines / .npy records),
- `predict_fn(data, model)` -> predictions (optional; default: `model.predict(data)`),
- `output_fn(prediction, accept)` -> body or (body, content_type) (optional; default: one prediction per
  record in CSV / JSON / JSON Lines / .npy),
- or `transform_fn(model, body, content_type, accept)` instead of the last three.

Text bodies (CSV, JSON, JSON Lines, text/*) reach `input_fn` as `str`, others as `bytes`.

As SageMaker's framework containers (scikit-learn's among them) do for a model deployed with an
`entry_point` and `source_dir`, the module can come from elsewhere than the archive's `code/`:
`SAGEMAKER_SUBMIT_DIRECTORY` names a directory or a `sourcedir.tar.gz` (an `s3://` URI, a local path,
`file://...`, or a path under /opt/ml/model for a repacked archive) and `SAGEMAKER_PROGRAM` the module in
it. A program that was named and is not there fails the load: a user's code is never silently replaced
by the defaults.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import itertools
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

from sagepilot_model_server import codecs
from sagepilot_model_server.errors import BadRequest, ModelError, ModelServerError, UnsupportedContentType

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_PROGRAM = "inference.py"
CONTAINER_MODEL_DIR = "/opt/ml/model"
MODEL_ARCHIVE = "model.tar.gz"
DEFAULT_MODEL_FILES = ("model.joblib", "model.pkl")

_module_counter = itertools.count(1)
_import_lock = threading.Lock()


# Where the model comes from -----------------------------------------------------------------------------------
def download_model_data(s3_uri: str, dest_dir: str | Path, *, s3_client: Any = None) -> Path:
    """Download `s3://bucket/key` (a model.tar.gz) into `dest_dir`; returns the local file.

    Without `s3_client`, a boto3 client is made that honours `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`
    (the sandbox's S3) and the usual credential and region settings.
    """
    parsed = urlparse(s3_uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.lstrip("/"):
        raise ValueError(f"not an S3 object URI: {s3_uri!r} (expected s3://bucket/key/model.tar.gz)")
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if s3_client is None:
        import boto3  # only needed when the model comes from S3

        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        s3_client = boto3.client("s3", endpoint_url=endpoint)
    target = Path(dest_dir) / (Path(key).name or MODEL_ARCHIVE)
    target.parent.mkdir(parents=True, exist_ok=True)
    s3_client.download_file(bucket, key, str(target))
    return target


def extract_model_archive(archive: str | Path, dest_dir: str | Path) -> Path:
    """Unpack a model.tar.gz into `dest_dir` (refusing members that would land outside it); returns dest_dir."""
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise ValueError(f"cannot unpack model archive {str(archive)!r}: {error}") from error
    return dest


@dataclass
class ModelSource:
    """A local model directory, and the temporary directories made to get it (removed by `cleanup`)."""

    model_dir: Path
    temp_dirs: list[Path] = field(default_factory=list)

    def cleanup(self) -> None:
        for path in self.temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self.temp_dirs.clear()


def resolve_model_source(source: str | Path | None = None, *, s3_client: Any = None) -> ModelSource:
    """Turn a model reference into a directory holding the archive's content.

    `source` may be an `s3://` URI of a model.tar.gz, a local model.tar.gz, a directory that holds the
    extracted content (as SageMaker prepares /opt/ml/model), or a directory that holds only a model.tar.gz.
    None means `SM_MODEL_DIR`, or /opt/ml/model.
    """
    if source is None:
        source = os.environ.get("SM_MODEL_DIR") or DEFAULT_MODEL_DIR
    text = str(source)
    if text.startswith("s3://"):
        download_dir = Path(tempfile.mkdtemp(prefix="sagepilot-model-download-"))
        try:
            archive = download_model_data(text, download_dir, s3_client=s3_client)
            model_dir = Path(tempfile.mkdtemp(prefix="sagepilot-model-"))
            try:
                extract_model_archive(archive, model_dir)
            except Exception:
                shutil.rmtree(model_dir, ignore_errors=True)
                raise
        finally:
            shutil.rmtree(download_dir, ignore_errors=True)
        return ModelSource(model_dir, [model_dir])
    path = Path(source)
    if path.is_dir():
        archive = path / MODEL_ARCHIVE
        if archive.is_file() and not (path / "code").exists():
            return _extracted(archive)
        return ModelSource(path)
    if path.is_file():
        return _extracted(path)
    raise FileNotFoundError(f"no model at {text!r} (expected a directory, a model.tar.gz or an s3:// URI)")


def _extracted(archive: Path) -> ModelSource:
    model_dir = Path(tempfile.mkdtemp(prefix="sagepilot-model-"))
    try:
        extract_model_archive(archive, model_dir)
    except Exception:
        shutil.rmtree(model_dir, ignore_errors=True)
        raise
    return ModelSource(model_dir, [model_dir])


# The user module ------------------------------------------------------------------------------------------------
def import_user_module(path: Path) -> ModuleType:
    """Import `code/inference.py` under a name of its own, so several models can live in one process.

    Its directory is on sys.path while it is imported, so it can import modules packaged next to it.
    """
    name = f"sagepilot_user_inference_{next(_module_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    code_dir = str(path.parent)
    with _import_lock:
        sys.path.insert(0, code_dir)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(code_dir)
    return module


def default_model_fn(model_dir: str) -> Any:
    """Load `model.joblib` or `model.pkl` with joblib (used when the archive has no model_fn)."""
    for name in DEFAULT_MODEL_FILES:
        candidate = Path(model_dir) / name
        if candidate.is_file():
            import joblib  # only needed by this default

            return joblib.load(candidate)
    raise FileNotFoundError(
        f"no model_fn in code/{DEFAULT_PROGRAM} and no {' or '.join(DEFAULT_MODEL_FILES)} in {model_dir}: "
        "package code/inference.py with a model_fn(model_dir) that loads your model"
    )


def default_input_fn(body: str | bytes, content_type: str) -> list[codecs.Record]:
    """CSV, JSON, JSON Lines or .npy records as lists of floats (BadRequest / UnsupportedContentType otherwise)."""
    if isinstance(body, bytes) and content_type == codecs.NPY:
        return codecs.decode_npy_records(body)
    if isinstance(body, bytes):
        raise UnsupportedContentType(
            f"Content-Type {content_type!r} is not supported; send one of {', '.join(codecs.SUPPORTED_TYPES)}"
        )
    return codecs.decode_records(body, content_type)


def default_predict_fn(data: Any, model: Any) -> Any:
    """`model.predict(data)`, after checking the feature count against `model.n_features_in_` if it has one."""
    expected = getattr(model, "n_features_in_", None)
    if isinstance(expected, int) and isinstance(data, list):
        codecs.check_feature_count(data, expected)
    return model.predict(data)


def default_output_fn(prediction: Any, accept: str) -> bytes:
    """One prediction per record, in CSV, JSON (`{"predictions": [...]}`) or JSON Lines."""
    return codecs.encode_predictions(prediction, accept)


@dataclass
class InferenceHandler:
    """A loaded model and the functions that serve it."""

    model: Any
    model_dir: Path
    input_fn: Callable[[str | bytes, str], Any] = default_input_fn
    predict_fn: Callable[[Any, Any], Any] = default_predict_fn
    output_fn: Callable[[Any, str], Any] = default_output_fn
    transform_fn: Callable[[Any, str | bytes, str, str], Any] | None = None
    module: ModuleType | None = None
    source: ModelSource | None = None
    code_source: ModelSource | None = None  # SAGEMAKER_SUBMIT_DIRECTORY's sources, unpacked

    @property
    def writes_own_output(self) -> bool:
        """Whether user code serializes responses (then any Accept is passed through to it)."""
        return self.transform_fn is not None or self.output_fn is not default_output_fn

    def supported_accepts(self) -> tuple[str, ...] | None:
        """The response types the default output_fn writes; None when user code writes responses."""
        return None if self.writes_own_output else codecs.SUPPORTED_TYPES

    def check_content_type(self, content_type: str) -> None:
        """Reject, before any work, a type the default input_fn cannot read (user input_fn decides itself)."""
        if (
            self.transform_fn is None
            and self.input_fn is default_input_fn
            and content_type not in codecs.SUPPORTED_TYPES
        ):
            raise UnsupportedContentType(
                f"Content-Type {content_type!r} is not supported; send one of {', '.join(codecs.SUPPORTED_TYPES)}"
            )

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """Run one request: returns (response body, response content type).

        Raises a ModelServerError: the user's own (e.g. BadRequest from input_fn), or ModelError (500) for
        anything else user code raised.
        """
        payload: str | bytes = body
        if codecs.is_text(content_type):
            try:
                payload = body.decode("utf-8-sig")
            except UnicodeDecodeError as error:
                raise BadRequest(f"the request body is not valid UTF-8 (byte {error.start})") from None
        if self.transform_fn is not None:
            result = _call("transform_fn", self.transform_fn, self.model, payload, content_type, accept)
        else:
            data = _call("input_fn", self.input_fn, payload, content_type)
            prediction = _call("predict_fn", self.predict_fn, data, self.model)
            if self.input_fn is default_input_fn and self.output_fn is default_output_fn:
                _check_prediction_count(data, prediction)
            result = _call("output_fn", self.output_fn, prediction, accept)
        return _response(result, accept)

    def close(self) -> None:
        if self.source is not None:
            self.source.cleanup()
        if self.code_source is not None:
            self.code_source.cleanup()


def _call(stage: str, function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except ModelServerError:
        raise
    except Exception as error:
        log.exception("%s raised", stage)
        raise ModelError(f"{stage} raised {type(error).__name__}: {error}") from error


def _check_prediction_count(data: Any, prediction: Any) -> None:
    predictions = codecs.plain(prediction)
    if isinstance(predictions, list | tuple) and len(predictions) != len(data):
        raise ModelError(f"predict_fn returned {len(predictions)} predictions for {len(data)} records")


def _response(result: Any, accept: str) -> tuple[bytes, str]:
    content_type = accept
    if isinstance(result, tuple) and len(result) == 2:
        result, content_type = result
    if isinstance(result, str):
        result = result.encode("utf-8")
    if isinstance(result, bytearray | memoryview):
        result = bytes(result)
    if not isinstance(result, bytes):
        raise ModelError(
            f"output_fn must return bytes or str (or a (body, content_type) pair), not {type(result).__name__}"
        )
    return result, str(content_type)


def code_directory(
    model_dir: Path, submit_dir: str | None, *, s3_client: Any = None
) -> tuple[Path, ModelSource | None]:
    """Where the user's module lives: `SAGEMAKER_SUBMIT_DIRECTORY` (see the module docstring) or the
    archive's `code/`; with the temporary directory made to unpack it, if any."""
    if not submit_dir:
        return model_dir / "code", None
    location = submit_dir[len("file://") :] if submit_dir.startswith("file://") else submit_dir
    if location.startswith("s3://"):
        download_dir = Path(tempfile.mkdtemp(prefix="sagepilot-sourcedir-download-"))
        try:
            archive = download_model_data(location, download_dir, s3_client=s3_client)
            return _unpacked_sources(archive)
        finally:
            shutil.rmtree(download_dir, ignore_errors=True)
    if location == CONTAINER_MODEL_DIR or location.startswith(CONTAINER_MODEL_DIR + "/"):
        return model_dir / location[len(CONTAINER_MODEL_DIR) :].lstrip("/"), None
    path = Path(location)
    if path.is_dir():
        return path, None
    if path.is_file():
        return _unpacked_sources(path)
    raise FileNotFoundError(f"SAGEMAKER_SUBMIT_DIRECTORY {submit_dir!r} is neither a directory nor a sourcedir.tar.gz")


def _unpacked_sources(archive: Path) -> tuple[Path, ModelSource]:
    code_dir = Path(tempfile.mkdtemp(prefix="sagepilot-sourcedir-"))
    try:
        extract_model_archive(archive, code_dir)
    except Exception:
        shutil.rmtree(code_dir, ignore_errors=True)
        raise
    return code_dir, ModelSource(code_dir, [code_dir])


def load_handler(
    model_dir: str | Path, *, program: str | None = None, submit_dir: str | None = None, s3_client: Any = None
) -> InferenceHandler:
    """Import `<code dir>/<program>` (default `SAGEMAKER_PROGRAM` or inference.py; the code directory is
    `SAGEMAKER_SUBMIT_DIRECTORY` or the model's `code/`) and call its model_fn; missing optional functions
    get the defaults."""
    model_dir = Path(model_dir)
    named = program or os.environ.get("SAGEMAKER_PROGRAM")
    program = named or DEFAULT_PROGRAM
    if not program.endswith(".py"):
        program += ".py"
    submit_dir = submit_dir if submit_dir is not None else os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY")
    code_dir, code_source = code_directory(model_dir, submit_dir, s3_client=s3_client)
    try:
        handler = _load_from(model_dir, code_dir / program, strict=bool(named or submit_dir))
    except BaseException:
        if code_source is not None:
            code_source.cleanup()
        raise
    handler.code_source = code_source
    return handler


def _load_from(model_dir: Path, code_path: Path, *, strict: bool) -> InferenceHandler:
    if strict and not code_path.is_file():
        raise FileNotFoundError(
            f"SAGEMAKER_PROGRAM {code_path.name!r} is not in {code_path.parent} "
            "(SAGEMAKER_SUBMIT_DIRECTORY's sources, or the model's code/)"
        )
    program = code_path.name
    model_dir = Path(model_dir)
    module = import_user_module(code_path) if code_path.is_file() else None
    functions: dict[str, Any] = {}
    if module is not None:
        for name in ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn"):
            function = getattr(module, name, None)
            if function is not None:
                if not callable(function):
                    raise TypeError(f"{name} in {code_path} is not a function")
                functions[name] = function
        if "transform_fn" in functions and {"input_fn", "predict_fn", "output_fn"} & functions.keys():
            raise TypeError(f"{code_path} defines transform_fn and input_fn/predict_fn/output_fn: use one or the other")
    elif (model_dir / "code").is_dir():
        log.warning("no code/%s in %s: using the default functions", program, model_dir)
    model_fn = functions.get("model_fn", default_model_fn)
    _check_arity(model_fn, 1, "model_fn(model_dir)")
    model = model_fn(str(model_dir))
    return InferenceHandler(
        model=model,
        model_dir=model_dir,
        input_fn=functions.get("input_fn", default_input_fn),
        predict_fn=functions.get("predict_fn", default_predict_fn),
        output_fn=functions.get("output_fn", default_output_fn),
        transform_fn=functions.get("transform_fn"),
        module=module,
    )


def _check_arity(function: Callable[..., Any], count: int, usage: str) -> None:
    try:
        inspect.signature(function).bind(*range(count))
    except TypeError:
        raise TypeError(f"{getattr(function, '__name__', function)!r} must be callable as {usage}") from None
    except ValueError:  # builtins without a signature
        pass


def load_model(
    source: str | Path | None = None,
    *,
    program: str | None = None,
    submit_dir: str | None = None,
    s3_client: Any = None,
) -> InferenceHandler:
    """Resolve `source` (see `resolve_model_source`) and load it; the handler removes its temporary files on close."""
    resolved = resolve_model_source(source, s3_client=s3_client)
    try:
        handler = load_handler(resolved.model_dir, program=program, submit_dir=submit_dir, s3_client=s3_client)
    except BaseException:
        resolved.cleanup()
        raise
    handler.source = resolved
    return handler
