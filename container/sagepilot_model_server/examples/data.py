"""Synthetic churn-like data: four numeric features per customer and, for training, a 0/1 label.

Everything is generated from a seed with the standard library (no downloads, no NumPy), values rounded
to two decimals so they survive CSV and JSON unchanged. Inference inputs hold features only; training data
puts the label first in CSV (as SageMaker's built-in algorithms expect) and as "label" in JSON Lines.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

FEATURE_NAMES = ("tenure_months", "monthly_spend", "support_calls", "usage_hours")
N_FEATURES = len(FEATURE_NAMES)

Format = Literal["csv", "jsonl"]


def _row(rng: random.Random) -> list[float]:
    return [
        round(rng.uniform(0, 72), 2),
        round(rng.uniform(10, 150), 2),
        float(rng.randint(0, 10)),
        round(rng.uniform(0, 100), 2),
    ]


def churn_probability(row: Sequence[float]) -> float:
    """The rule the labels are drawn from: short tenure, high spend, many support calls, low usage churn."""
    tenure, spend, calls, usage = row
    logit = 1.0 - 0.06 * tenure + 0.015 * spend + 0.45 * calls - 0.04 * usage
    return 1.0 / (1.0 + math.exp(-logit))


def feature_rows(n_rows: int, *, seed: int = 0) -> list[list[float]]:
    """`n_rows` feature vectors (inference input)."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible from a seed
    return [_row(rng) for _ in range(n_rows)]


def labeled_rows(n_rows: int, *, seed: int = 0) -> tuple[list[list[float]], list[int]]:
    """`n_rows` feature vectors and their 0/1 labels (training data)."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible from a seed
    rows = [_row(rng) for _ in range(n_rows)]
    labels = [int(rng.random() < churn_probability(row)) for row in rows]
    return rows, labels


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def to_csv(rows: Sequence[Sequence[float]], labels: Sequence[int] | None = None) -> str:
    """One record per line, no header; with `labels`, the label is the first column."""
    lines = []
    for index, row in enumerate(rows):
        values = [_number(v) for v in row]
        if labels is not None:
            values.insert(0, str(labels[index]))
        lines.append(",".join(values))
    return "".join(line + "\n" for line in lines)


def to_jsonl(rows: Sequence[Sequence[float]], labels: Sequence[int] | None = None) -> str:
    """One JSON array of features per line; with `labels`, `{"features": [...], "label": y}` per line."""
    if labels is None:
        return "".join(json.dumps(list(row)) + "\n" for row in rows)
    return "".join(json.dumps({"features": list(row), "label": labels[i]}) + "\n" for i, row in enumerate(rows))


def _format_of(path: Path, fmt: Format | None) -> Format:
    if fmt is not None:
        return fmt
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] == ".csv":
        return "csv"
    if suffixes and suffixes[-1] == ".jsonl":
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path.name!r}: name it .csv or .jsonl (optionally .gz), or pass fmt")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix.lower() == ".gz" else data)
    return path


def write_features(path: str | Path, n_rows: int, *, seed: int = 0, fmt: Format | None = None) -> Path:
    """Write inference input (features only) as CSV or JSON Lines, chosen by `fmt` or the file name (.gz: gzip)."""
    path = Path(path)
    rows = feature_rows(n_rows, seed=seed)
    return _write(path, to_csv(rows) if _format_of(path, fmt) == "csv" else to_jsonl(rows))


def write_training_data(path: str | Path, n_rows: int, *, seed: int = 0, fmt: Format | None = None) -> Path:
    """Write labelled training data as CSV (label first) or JSON Lines (`features` and `label`)."""
    path = Path(path)
    rows, labels = labeled_rows(n_rows, seed=seed)
    return _write(path, to_csv(rows, labels) if _format_of(path, fmt) == "csv" else to_jsonl(rows, labels))
