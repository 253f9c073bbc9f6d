"""The example models and the synthetic data the sandbox's demo reuses."""

from __future__ import annotations

import gzip
import json
import tarfile

import pytest

from sagepilot_model_server import load_model
from sagepilot_model_server.examples import (
    FEATURE_NAMES,
    N_FEATURES,
    build_example_model,
    feature_rows,
    labeled_rows,
    load_estimator,
    record_fails,
    to_csv,
    to_jsonl,
    write_features,
    write_training_data,
)


def test_data_is_reproducible_from_its_seed():
    assert feature_rows(50, seed=3) == feature_rows(50, seed=3)
    assert feature_rows(50, seed=3) != feature_rows(50, seed=4)
    rows, labels = labeled_rows(1000, seed=3)
    assert all(len(row) == N_FEATURES == len(FEATURE_NAMES) for row in rows)
    assert set(labels) == {0, 1}
    assert 0.3 < sum(labels) / len(labels) < 0.7


def test_training_and_inference_formats():
    rows, labels = labeled_rows(3, seed=1)
    csv_lines = to_csv(rows, labels).splitlines()
    assert [line.split(",")[0] for line in csv_lines] == [str(label) for label in labels]
    assert [len(line.split(",")) for line in csv_lines] == [N_FEATURES + 1] * 3
    assert [len(line.split(",")) for line in to_csv(rows).splitlines()] == [N_FEATURES] * 3
    records = [json.loads(line) for line in to_jsonl(rows, labels).splitlines()]
    assert records == [{"features": row, "label": label} for row, label in zip(rows, labels, strict=True)]
    assert [json.loads(line) for line in to_jsonl(rows).splitlines()] == rows


def test_writing_files_by_extension(tmp_path):
    csv_path = write_features(tmp_path / "in" / "customers.csv", 10, seed=2)
    assert csv_path.read_text() == to_csv(feature_rows(10, seed=2))
    gz_path = write_features(tmp_path / "customers.jsonl.gz", 10, seed=2)
    assert gzip.decompress(gz_path.read_bytes()).decode() == to_jsonl(feature_rows(10, seed=2))
    train = write_training_data(tmp_path / "train.csv", 5, seed=2)
    assert train.read_text() == to_csv(*labeled_rows(5, seed=2))
    with pytest.raises(ValueError, match=r"name it \.csv or \.jsonl"):
        write_features(tmp_path / "customers.parquet", 1)


def test_example_archive_layout_and_reproducibility(tmp_path, models):
    with tarfile.open(models.v1) as tar:
        assert sorted(tar.getnames()) == ["code", "code/inference.py", "config.json", "model.joblib"]
        config = json.loads(tar.extractfile("config.json").read())
    assert config["version"] == "v1"
    assert config["n_features"] == N_FEATURES
    assert config["broken_share"] == 0.0
    again = build_example_model(tmp_path, seed=1, version="v1")
    assert again.name == "model.tar.gz"
    assert again.read_bytes() == models.v1.read_bytes()


def test_versions_differ_slightly(models):
    rows = feature_rows(1000, seed=30)
    v1 = load_estimator(models.v1).predict(rows)
    v2 = load_estimator(models.v2).predict(rows)
    assert 0 < (v1 != v2).sum() < 150
    rows_with_labels, labels = labeled_rows(1000, seed=31)
    accuracy = (load_estimator(models.v1).predict(rows_with_labels) == labels).mean()
    assert accuracy > 0.7  # it learnt the rule the labels come from


def test_broken_share_selects_that_share_of_records():
    rows = feature_rows(5000, seed=40)
    for share in (0.0, 0.1, 0.5, 1.0):
        failing = sum(record_fails(row, share, salt=1) for row in rows)
        assert abs(failing / len(rows) - share) < 0.03
    assert [record_fails(row, 0.3, 1) for row in rows[:50]] != [record_fails(row, 0.3, 2) for row in rows[:50]]


def test_broken_model_in_process(models):
    handler = load_model(models.broken)
    try:
        rows = feature_rows(100, seed=41)
        good = [row for row in rows if not record_fails(row, 0.3, 11)]
        body, _ = handler.invoke(to_csv(good).encode(), "text/csv", "text/csv")
        assert len(body.decode().splitlines()) == len(good) < len(rows)
    finally:
        handler.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"broken_share": 1.5}, "between 0 and 1"), ({"broken_mode": "sometimes"}, "'record' or 'random'")],
)
def test_build_refuses_bad_settings(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_example_model(tmp_path, **kwargs)
