"""The default wire formats: CSV, JSON, JSON Lines and NumPy's `.npy` (`application/x-npy`, the default of the
SageMaker scikit-learn container and of the SDK's SKLearnPredictor) in, one prediction per record out, records
in order.

Records are decoded to plain Python (`list[list[float]]`), which scikit-learn and most libraries accept, so
the server itself needs no NumPy (`.npy` is read and written with the standard library: version 1-3
headers, C or Fortran order, little- or big-endian numbers, booleans; 1-D is one record, 2-D one per row).
Every decoding error is a `BadRequest` whose message says where the input
went wrong (line, column, record) and what was expected.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import struct
from collections.abc import Sequence
from typing import Any

from sagepilot_model_server.errors import BadRequest, NotAcceptable, UnsupportedContentType

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
TEXT_TYPES: tuple[str, ...] = (CSV, JSON, JSONLINES)
SUPPORTED_TYPES: tuple[str, ...] = (*TEXT_TYPES, NPY)

_ALIASES = {
    "application/jsonl": JSONLINES,
    "application/x-jsonlines": JSONLINES,
    "application/json-lines": JSONLINES,
    "application/x-ndjson": JSONLINES,
    "text/x-csv": CSV,
    "application/csv": CSV,
}

Record = list[float]


def media_type(header: str | None) -> str | None:
    """The bare, lower-case media type of a Content-Type or Accept entry (parameters dropped, aliases
    mapped to their SageMaker name); None for a missing or blank header."""
    if header is None:
        return None
    bare = header.split(";", 1)[0].strip().lower()
    if not bare:
        return None
    return _ALIASES.get(bare, bare)


def is_text(content_type: str) -> bool:
    """Whether a request body of this type is handed to `input_fn` as `str` (decoded UTF-8) rather than bytes."""
    return content_type in TEXT_TYPES or content_type.startswith("text/") or content_type.endswith("+json")


# Decoding ---------------------------------------------------------------------------------------------------
def decode_records(body: str, content_type: str) -> list[Record]:
    """Records (lists of finite floats, all of the same length) from a request body, in order."""
    if content_type == CSV:
        records = _csv_records(body)
    elif content_type == JSON:
        records = _json_records(body)
    elif content_type == JSONLINES:
        records = _jsonlines_records(body)
    else:
        raise UnsupportedContentType(
            f"Content-Type {content_type!r} is not supported; send one of {', '.join(SUPPORTED_TYPES)} "
            "(or package an input_fn in code/inference.py that reads it)"
        )
    return _checked(records, "line" if content_type != JSON else "record")


def decode_npy_records(body: bytes) -> list[Record]:
    """Records from a `.npy` body: a 1-D array is one record, a 2-D array one record per row."""
    shape, values = read_npy(body)
    if len(shape) == 1:
        records = [values] if values else []
    elif len(shape) == 2:
        width = shape[1]
        records = [values[row * width : (row + 1) * width] for row in range(shape[0])]
    else:
        raise BadRequest(f"a .npy request must be a 1-D or 2-D array of numbers, not {len(shape)}-D {shape}")
    for index, record in enumerate(records, start=1):
        for position, number in enumerate(record, start=1):
            if not math.isfinite(number):
                raise BadRequest(f"row {index}, feature {position}: {number!r} is not a finite number")
    return _checked(records, "row")


def _checked(records: list[Record], unit: str) -> list[Record]:
    if not records:
        raise BadRequest("the request has no records; send at least one record")
    _check_same_width(records, unit)
    return records


_NPY_MAGIC = b"\x93NUMPY"
_NPY_KINDS = {
    "f": {2: "e", 4: "f", 8: "d"},
    "i": {1: "b", 2: "h", 4: "i", 8: "q"},
    "u": {1: "B", 2: "H", 4: "I", 8: "Q"},
}


def read_npy(body: bytes) -> tuple[tuple[int, ...], list[float]]:
    """(shape, values in C order) of a `.npy` body of numbers or booleans; BadRequest for anything else."""
    if not body.startswith(_NPY_MAGIC) or len(body) < 10:
        raise BadRequest("the body is not a .npy file (it must start with \\x93NUMPY); send numpy.save output")
    major = body[6]
    if major == 1:
        length, start = struct.unpack("<H", body[8:10])[0], 10
    elif major in (2, 3):
        length, start = struct.unpack("<I", body[8:12])[0], 12
    else:
        raise BadRequest(f".npy format version {major} is not supported (1, 2 or 3 are)")
    try:
        header = ast.literal_eval(body[start : start + length].decode("latin1" if major < 3 else "utf-8"))
        descr, fortran, shape = str(header["descr"]), bool(header["fortran_order"]), tuple(header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError):
        raise BadRequest("the .npy header is not valid") from None
    order, kind, size = descr[0], descr[1:2], int(descr[2:] or 0) if descr[2:].isdigit() else 0
    if descr in ("|b1", "?"):
        code, order = "?", "<"
    elif kind in _NPY_KINDS and size in _NPY_KINDS[kind] and order in "<>|=":
        code = _NPY_KINDS[kind][size]
    else:
        raise BadRequest(f".npy dtype {descr!r} is not numeric; send an array of numbers (float or int)")
    count = math.prod(shape)
    data = body[start + length :]
    fmt = (">" if order == ">" else "<") + code
    width = struct.calcsize(fmt)
    if len(data) < count * width:
        raise BadRequest(f"the .npy body holds {len(data)} bytes of data; its header announces {count * width}")
    values = [float(v) for (v,) in struct.iter_unpack(fmt, data[: count * width])]
    if fortran and len(shape) == 2:
        rows, cols = shape
        values = [values[c * rows + r] for r in range(rows) for c in range(cols)]
    elif fortran and len(shape) > 2:
        raise BadRequest("a Fortran-ordered .npy array must be 1-D or 2-D")
    return shape, values


def write_npy(values: list[Any]) -> bytes:
    """A `.npy` (version 1.0) of a 1-D list of numbers, or a 2-D list of equal-length rows; int64 when every
    value is an integer, else float64."""
    rows = [list(v) if isinstance(v, list | tuple) else None for v in values]
    two_d = bool(values) and all(row is not None for row in rows)
    flat: list[Any] = [x for row in rows for x in (row or [])] if two_d else list(values)
    if any(isinstance(v, list | tuple) for v in flat) or not all(_is_number(v) or isinstance(v, bool) for v in flat):
        raise TypeError("predictions written as application/x-npy must be numbers, one per record or one row each")
    shape: tuple[int, ...] = (len(values), len(rows[0] or [])) if two_d else (len(values),)
    if two_d and any(len(row or []) != shape[1] for row in rows):
        raise TypeError("predictions written as application/x-npy must have rows of the same length")
    integral = all(isinstance(v, int) for v in flat)
    descr, code = ("<i8", "q") if integral else ("<f8", "d")
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    padding = 64 - (10 + len(header) + 1) % 64
    header_bytes = (header + " " * (padding % 64) + "\n").encode("latin1")
    payload = struct.pack(f"<{len(flat)}{code}", *[int(v) if integral else float(v) for v in flat])
    return _NPY_MAGIC + bytes([1, 0]) + struct.pack("<H", len(header_bytes)) + header_bytes + payload


def _csv_records(body: str) -> list[Record]:
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(body))
    try:
        for fields in reader:
            rows.append((reader.line_num, fields))
    except csv.Error as error:
        raise BadRequest(f"CSV line {reader.line_num}: {error}") from None
    rows = _drop_trailing_blanks(rows, lambda fields: not any(field.strip() for field in fields))
    records: list[Record] = []
    for line, fields in rows:
        if not any(field.strip() for field in fields):
            raise BadRequest(f"CSV line {line} is empty; send one record per line, with no blank lines")
        records.append([_csv_number(text, line, column) for column, text in enumerate(fields, start=1)])
    return records


def _csv_number(text: str, line: int, column: int) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise BadRequest(
            f"CSV line {line}, column {column}: {text!r} is not a number "
            "(records must hold numeric features only, with no header row)"
        ) from None
    if not math.isfinite(value):
        raise BadRequest(f"CSV line {line}, column {column}: {text!r} is not a finite number")
    return value


def _json_records(body: str) -> list[Record]:
    data = _parse_json(body, "the request body")
    if isinstance(data, dict):
        if "instances" in data:
            instances = data["instances"]
            if not isinstance(instances, list):
                raise BadRequest("'instances' must be a list of records")
            return [_record(item, f"instances[{i}]") for i, item in enumerate(instances)]
        if "features" in data:
            return [_record(data, "the request body")]
        raise BadRequest(
            "a JSON object must have 'instances' (a list of records) or 'features' (one record); "
            f"got keys {sorted(data)[:5]}"
        )
    if isinstance(data, list):
        if data and all(_is_number(item) for item in data):
            return [_record(data, "the request body")]  # a single record: [1.0, 2.0, ...]
        return [_record(item, f"record {i + 1}") for i, item in enumerate(data)]
    raise BadRequest(f"a JSON request must be an array or an object, not {_json_type(data)}")


def _jsonlines_records(body: str) -> list[Record]:
    lines = _drop_trailing_blanks(list(enumerate(body.splitlines(), start=1)), lambda text: not text.strip())
    records: list[Record] = []
    for line, text in lines:
        if not text.strip():
            raise BadRequest(f"JSON Lines line {line} is empty; send one JSON record per line, with no blank lines")
        records.append(_record(_parse_json(text, f"JSON Lines line {line}"), f"JSON Lines line {line}"))
    return records


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BadRequest(
            f"{where} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None


def _record(value: Any, where: str) -> Record:
    if isinstance(value, dict) and "features" in value:
        value = value["features"]
    if not isinstance(value, list):
        raise BadRequest(
            f"{where}: a record must be a list of numbers or an object with a 'features' list, not {_json_type(value)}"
        )
    record: Record = []
    for position, item in enumerate(value, start=1):
        if not _is_number(item):
            raise BadRequest(f"{where}, feature {position}: {item!r} is not a number")
        number = float(item)
        if not math.isfinite(number):
            raise BadRequest(f"{where}, feature {position}: {item!r} is not a finite number")
        record.append(number)
    return record


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _drop_trailing_blanks(items: list[Any], blank: Any) -> list[Any]:
    end = len(items)
    while end and blank(items[end - 1][1]):
        end -= 1
    return items[:end]


def _check_same_width(records: list[Record], unit: str) -> None:
    width = len(records[0])
    if width == 0:
        raise BadRequest(f"{unit} 1 has no features")
    for index, record in enumerate(records[1:], start=2):
        if len(record) != width:
            raise BadRequest(
                f"{unit} {index} has {len(record)} features but {unit} 1 has {width}; "
                "every record needs the same number of features"
            )


def check_feature_count(records: Sequence[Sequence[Any]], expected: int) -> None:
    """Raise BadRequest unless every record has `expected` features (for predict_fn implementations)."""
    for index, record in enumerate(records, start=1):
        if len(record) != expected:
            raise BadRequest(f"record {index} has {len(record)} features; this model expects {expected}")


# Encoding ---------------------------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    """NumPy arrays and scalars as plain Python (lists, floats, ints); anything else unchanged."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    return value


def encode_predictions(predictions: Any, accept: str) -> bytes:
    """One prediction per record, in order: CSV lines, JSON Lines, or `{"predictions": [...]}` in JSON."""
    items = plain(predictions)
    if accept == JSON:
        document = items if isinstance(items, dict) else {"predictions": _as_list(items)}
        return (_dumps(document) + "\n").encode()
    if accept == JSONLINES:
        return "".join(_dumps(item) + "\n" for item in _as_list(items)).encode()
    if accept == NPY:
        return write_npy(_as_list(items))
    if accept == CSV:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for item in _as_list(items):
            writer.writerow(_csv_row(plain(item)))
        return out.getvalue().encode()
    raise NotAcceptable(f"cannot write predictions as {accept!r}; ask for one of {', '.join(SUPPORTED_TYPES)}")


def _as_list(items: Any) -> list[Any]:
    if isinstance(items, list | tuple):
        return list(items)
    raise TypeError(
        f"predict_fn must return one prediction per record (a list or an array), not {type(items).__name__}"
    )


def _csv_row(item: Any) -> list[Any]:
    if isinstance(item, dict):
        return [plain(value) for value in item.values()]
    if isinstance(item, list | tuple):
        return [plain(value) for value in item]
    return [item]


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, allow_nan=False, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    converted = plain(value)
    if converted is value:
        item = getattr(value, "item", None)
        if callable(item):
            return item()
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return converted


# Content negotiation ----------------------------------------------------------------------------------------
def negotiate_accept(header: str | None, *, default: str, supported: Sequence[str] | None) -> str:
    """The response type for an Accept header: the acceptable type with the highest q that we can write.

    `supported` is None when user code writes the response (its own output_fn): then the client's first
    choice is passed through and output_fn decides. A missing header, or `*/*`, means `default`.
    """
    if header is None or not header.strip():
        return default
    ranges: list[tuple[float, str]] = []
    for entry in header.split(","):
        media = media_type(entry)
        if media is None:
            continue
        ranges.append((_quality(entry), media))
    ranges.sort(key=lambda pair: -pair[0])  # stable: equal q keeps the client's order
    for quality, media in ranges:
        if quality <= 0:
            continue
        if media == "*/*":
            return default
        if media.endswith("/*"):
            prefix = media[:-1]
            for candidate in (default, *(supported or ())):
                if candidate.startswith(prefix):
                    return candidate
            continue
        if supported is None or media in supported:
            return media
    choices = ", ".join(supported) if supported else default
    raise NotAcceptable(f"Accept {header!r} names no type this model can return; accept one of {choices}")


def _quality(entry: str) -> float:
    for parameter in entry.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0
