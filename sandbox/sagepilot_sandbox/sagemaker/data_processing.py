"""A transform job's `DataProcessing` as SageMaker applies it: InputFilter, JoinSource, OutputFilter.

- `InputFilter` selects from each input record what goes to the model: a CSV record is read as a JSON
  array of its fields, a JSON (Lines) record as its JSON value; the selection is written back in the
  record's format (CSV fields joined by commas, JSON compactly).
- `JoinSource: Input` joins each input record (unfiltered) with its prediction: an array record gets the
  prediction's values appended; an object record gets it under `SageMakerOutput`. The model must answer
  one line per record of a request; joined records are written one per line (SageMaker requires
  `SplitType: Line` for it; the sandbox fails a job that asks otherwise).
- `OutputFilter` selects from each (joined, or plain) output record what is written.

JSONPath, the subset SageMaker documents for these filters: `$` (the whole record), `.name` and
`['name']` (a member), `[i]` (an element; negative counts from the end), `[i:j]` / `[i:]` / `[:j]` (a
slice) and `[i,j,...]` (several elements), chained: `$.features[1:]`. Anything else (`*`, `..`,
filter expressions) is refused by name: the job fails with `ClientError` saying which expression
the sandbox does not apply, rather than ignoring it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_STEP = re.compile(
    r"""\.(?P<member>[A-Za-z_][A-Za-z0-9_\-]*)"""
    r"""|\[\s*'(?P<quoted>[^']*)'\s*\]"""
    r"""|\[\s*(?P<slice>-?\d*\s*:\s*-?\d*)\s*\]"""
    r"""|\[\s*(?P<indexes>-?\d+(\s*,\s*-?\d+)*)\s*\]"""
)

CSV = "text/csv"


class FilterError(ValueError):
    """A JSONPath the sandbox does not apply, or a record it cannot apply it to; the message says which."""


Step = Callable[[Any], Any]


@dataclass(frozen=True)
class JsonPath:
    text: str
    steps: tuple[Step, ...]

    def apply(self, value: Any) -> Any:
        for step in self.steps:
            value = step(value)
        return value


def parse_path(text: str) -> JsonPath:
    """A compiled JSONPath of the supported subset; FilterError naming what is not supported."""
    expression = text.strip()
    if not expression.startswith("$"):
        raise FilterError(f"JSONPath {text!r} must start with '$'")
    steps: list[Step] = []
    position = 1
    while position < len(expression):
        match = _STEP.match(expression, position)
        if match is None:
            raise FilterError(
                f"JSONPath {text!r}: the sandbox applies $, .name, ['name'], [i], [i:j] and [i,j,...] only "
                f"(not {expression[position:]!r})"
            )
        steps.append(_step(match, text))
        position = match.end()
    return JsonPath(text, tuple(steps))


def _step(match: re.Match[str], text: str) -> Step:
    name = match.group("member") if match.group("member") is not None else match.group("quoted")
    if name is not None:

        def member(value: Any) -> Any:
            if not isinstance(value, dict) or name not in value:
                raise FilterError(f"JSONPath {text!r}: the record has no member {name!r}")
            return value[name]

        return member
    if match.group("slice") is not None:
        start_text, _, end_text = match.group("slice").partition(":")
        start = int(start_text) if start_text.strip() else None
        end = int(end_text) if end_text.strip() else None

        def sliced(value: Any) -> Any:
            return _array(value, text)[start:end]

        return sliced
    indexes = [int(i) for i in match.group("indexes").split(",")]

    def picked(value: Any) -> Any:
        array = _array(value, text)
        try:
            chosen = [array[i] for i in indexes]
        except IndexError:
            raise FilterError(f"JSONPath {text!r}: the record has {len(array)} elements") from None
        return chosen[0] if len(indexes) == 1 else chosen

    return picked


def _array(value: Any, text: str) -> list[Any]:
    if not isinstance(value, list):
        raise FilterError(f"JSONPath {text!r}: the record is not an array")
    return value


# Records ---------------------------------------------------------------------------------------------
def media_type(header: str | None) -> str | None:
    """The bare, lower-case media type of a Content-Type (`text/csv; charset=utf-8` -> `text/csv`)."""
    if not header:
        return None
    return header.split(";", 1)[0].strip().lower() or None


def read_record(record: bytes, content_type: str | None) -> Any:
    """A record as JSONPath sees it: a CSV line as an array of its fields, anything else as JSON."""
    text = record.decode("utf-8")
    if content_type == CSV:
        return next(csv.reader([text]), [])  # fields keep their text: a CSV record is written back as it was
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FilterError(f"the record is not valid JSON ({exc.msg}); filters need CSV or JSON records") from None


def write_record(value: Any, content_type: str | None) -> bytes:
    """A value written back as a record of `content_type` (CSV: an array's values, comma-separated)."""
    if content_type == CSV:
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(value if isinstance(value, list) else [value])
        return out.getvalue().encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class DataProcessing:
    """A job's DataProcessing, compiled; `active` is False when it asks for nothing."""

    input_filter: JsonPath | None
    output_filter: JsonPath | None
    join_input: bool

    @property
    def active(self) -> bool:
        return self.input_filter is not None or self.output_filter is not None or self.join_input

    def filter_input(self, record: bytes, content_type: str | None) -> bytes:
        if self.input_filter is None:
            return record
        return write_record(self.input_filter.apply(read_record(record, content_type)), content_type)

    def output(self, record: bytes, prediction: bytes, input_type: str | None, output_type: str | None) -> bytes:
        """The output record for one input record and its prediction (one line of the model's answer)."""
        if not self.join_input and self.output_filter is None:
            return prediction
        value = read_record(prediction, output_type)
        if self.join_input:
            source = read_record(record, input_type)
            if isinstance(source, dict):
                value = {**source, "SageMakerOutput": value}
            elif isinstance(source, list):
                value = source + (value if isinstance(value, list) else [value])
            else:
                raise FilterError("JoinSource Input needs records that are CSV lines, JSON arrays or JSON objects")
        if self.output_filter is not None:
            value = self.output_filter.apply(value)
        return write_record(value, CSV if output_type == CSV and not isinstance(value, dict) else None)


def compile_data_processing(settings: dict[str, Any] | None) -> DataProcessing:
    """FilterError for a filter the sandbox does not apply or a JoinSource it does not know."""
    settings = settings or {}
    join = settings.get("JoinSource") or "None"
    if join not in ("None", "Input"):
        raise FilterError(f"JoinSource {join!r} is not one of None, Input")
    input_filter = settings.get("InputFilter")
    output_filter = settings.get("OutputFilter")
    return DataProcessing(
        input_filter=parse_path(input_filter) if input_filter and input_filter.strip() != "$" else None,
        output_filter=parse_path(output_filter) if output_filter and output_filter.strip() != "$" else None,
        join_input=join == "Input",
    )
