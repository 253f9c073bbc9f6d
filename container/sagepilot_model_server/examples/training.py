"""What a training container does with the example classifier: read labelled rows, train, evaluate, package.

The sandbox's SageMaker simulator runs this for a training job (see `sagepilot_sandbox.sagemaker.trainer`); it is
the part a real training image would run in `/opt/ml/code`. Training data comes in SageMaker's usual
shapes: CSV with the label in the first column and no header (as SageMaker's built-in algorithms
expect), or JSON Lines `{"label": y, "features": [...]}`. Every problem with the data is a
`TrainingDataError` whose message says where (file, line, column) and what was expected, so that the
job can fail with it as its `AlgorithmError` reason.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagepilot_model_server.examples.sklearn_model import package_estimator, train_from_rows

HOLDOUT_EVERY = 5  # without a validation set, every 5th training row is held out to measure accuracy


class TrainingDataError(ValueError):
    """The training data cannot be used (the message says where and why)."""


@dataclass
class LabeledData:
    rows: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def extend(self, other: LabeledData) -> None:
        self.rows += other.rows
        self.labels += other.labels

    def __len__(self) -> int:
        return len(self.rows)


def _number(text: Any, where: str) -> float:
    if isinstance(text, bool):
        raise TrainingDataError(f"{where}: {text!r} is not a number")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise TrainingDataError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise TrainingDataError(f"{where}: {text!r} is not a finite number")
    return value


def _label(value: float, where: str) -> int:
    if not float(value).is_integer():
        raise TrainingDataError(f"{where}: the label {value!r} is not a class number (0, 1, ...)")
    return int(value)


def parse_labeled_csv(text: str, source: str = "data") -> LabeledData:
    """CSV, label first, no header; blank lines are skipped."""
    data = LabeledData()
    reader = csv.reader(io.StringIO(text))
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            where = f"{source} line {reader.line_num}"
            if len(fields) < 2:
                raise TrainingDataError(f"{where}: expected a label and at least one feature, got {len(fields)} value")
            values = [_number(f.strip(), f"{where} column {i}") for i, f in enumerate(fields, start=1)]
            data.labels.append(_label(values[0], f"{where} column 1"))
            data.rows.append(values[1:])
    except csv.Error as error:
        raise TrainingDataError(f"{source} line {reader.line_num}: {error}") from None
    return data


def parse_labeled_jsonl(text: str, source: str = "data") -> LabeledData:
    """JSON Lines, one `{"label": y, "features": [...]}` per line; blank lines are skipped."""
    data = LabeledData()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            record = json.loads(line)
        except ValueError as error:
            raise TrainingDataError(f"{where}: not JSON ({error})") from None
        if not isinstance(record, dict) or "label" not in record or not isinstance(record.get("features"), list):
            raise TrainingDataError(f'{where}: expected {{"label": <class>, "features": [<numbers>]}}')
        features = [_number(v, f"{where} feature {i}") for i, v in enumerate(record["features"], start=1)]
        if not features:
            raise TrainingDataError(f"{where}: no features")
        data.labels.append(_label(_number(record["label"], f"{where} label"), f"{where} label"))
        data.rows.append(features)
    return data


def parse_labeled(text: str, content_type: str, source: str = "data") -> LabeledData:
    """Labelled rows from CSV (`text/csv`) or JSON Lines (`application/jsonlines`)."""
    if content_type.split(";")[0].strip().lower() in ("application/jsonlines", "application/x-jsonlines"):
        return parse_labeled_jsonl(text, source)
    return parse_labeled_csv(text, source)


def _check(data: LabeledData, channel: str, width: int | None = None) -> int:
    if not data.rows:
        raise TrainingDataError(f"the {channel} channel has no rows")
    widths = {len(row) for row in data.rows}
    if len(widths) > 1:
        first = len(data.rows[0])
        index = next(i for i, row in enumerate(data.rows) if len(row) != first)
        raise TrainingDataError(
            f"the {channel} channel's rows have different feature counts: row 1 has {first}, "
            f"row {index + 1} has {len(data.rows[index])}"
        )
    found = widths.pop()
    if width is not None and found != width:
        raise TrainingDataError(f"the {channel} channel's rows have {found} features; the training rows have {width}")
    return found


def accuracy(estimator: Any, rows: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    predicted = estimator.predict([list(r) for r in rows])
    return float(sum(int(p) == int(y) for p, y in zip(predicted, labels, strict=True)) / len(labels))


@dataclass(frozen=True)
class TrainedModel:
    estimator: Any
    n_features: int
    metrics: dict[str, float]


def train_and_evaluate(train: LabeledData, validation: LabeledData | None = None, *, seed: int = 1) -> TrainedModel:
    """Train the example classifier and measure it: `train:accuracy` on the rows it learnt from,
    `validation:accuracy` on the validation set (or, without one, on every 5th training row, held out).

    TrainingDataError: no rows, ragged rows, a single class.
    """
    width = _check(train, "train")
    if validation is not None and len(validation):
        _check(validation, "validation", width)
        fit, held = train, validation
    else:
        fit = LabeledData(
            [r for i, r in enumerate(train.rows) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1],
            [y for i, y in enumerate(train.labels) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1],
        )
        held = LabeledData(
            [r for i, r in enumerate(train.rows) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1],
            [y for i, y in enumerate(train.labels) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1],
        )
        if not held.rows or not fit.rows:
            fit = held = train
    classes = sorted(set(fit.labels))
    if len(classes) < 2:
        raise TrainingDataError(
            f"the training rows have a single class ({classes[0]}); a classifier needs at least two"
        )
    estimator = train_from_rows(fit.rows, fit.labels, seed=seed)
    metrics = {
        "train:accuracy": round(accuracy(estimator, fit.rows, fit.labels), 6),
        "validation:accuracy": round(accuracy(estimator, held.rows, held.labels), 6),
    }
    return TrainedModel(estimator, width, metrics)


def package_trained(model: TrainedModel, out_dir: str | Path, *, version: str) -> Path:
    """`out_dir/model.tar.gz` with the example's code/inference.py, ready for the model server."""
    return package_estimator(model.estimator, out_dir, n_features=model.n_features, version=version)
