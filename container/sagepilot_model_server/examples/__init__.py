"""Example models and synthetic data, for tests, the sandbox's demo and trying the container.

- `build_example_model(out_dir, seed=..., broken_share=...)`: a scikit-learn classifier packaged as
  model.tar.gz with its code/inference.py; a share of its records can be made to fail, for rollbacks.
- `feature_rows`, `labeled_rows`, `to_csv`, `to_jsonl`, `write_features`, `write_training_data`: synthetic
  churn-like data (4 numeric features), generated from a seed, no downloads.
- `train_from_rows`, `package_estimator`, and in `training`: `parse_labeled`, `train_and_evaluate`,
  `package_trained`: what a training job does with labelled rows (the sandbox's trainer runs them).
"""

from __future__ import annotations

from sagepilot_model_server.examples.data import (
    FEATURE_NAMES,
    N_FEATURES,
    feature_rows,
    labeled_rows,
    to_csv,
    to_jsonl,
    write_features,
    write_training_data,
)
from sagepilot_model_server.examples.sklearn_inference import record_fails
from sagepilot_model_server.examples.sklearn_model import (
    build_example_model,
    load_estimator,
    package_estimator,
    train_classifier,
    train_from_rows,
)
from sagepilot_model_server.examples.training import (
    TrainingDataError,
    accuracy,
    package_trained,
    parse_labeled,
    train_and_evaluate,
)

__all__ = [
    "FEATURE_NAMES",
    "N_FEATURES",
    "TrainingDataError",
    "accuracy",
    "build_example_model",
    "feature_rows",
    "labeled_rows",
    "load_estimator",
    "package_estimator",
    "package_trained",
    "parse_labeled",
    "record_fails",
    "to_csv",
    "to_jsonl",
    "train_and_evaluate",
    "train_classifier",
    "train_from_rows",
    "write_features",
    "write_training_data",
]
