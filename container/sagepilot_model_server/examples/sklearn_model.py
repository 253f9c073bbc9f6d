"""Training and packaging the example classifier (scaling + logistic regression on the synthetic data).

Training takes milliseconds. Versions differ by `seed` (another training sample, hence slightly different
coefficients): `build_example_model(dir, seed=1)` is a good v1, `seed=2` a slightly different v2, and
`broken_share=0.3` a version whose predictions fail for about 30% of records.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from sagepilot_model_server.examples import sklearn_inference
from sagepilot_model_server.examples.data import FEATURE_NAMES, N_FEATURES, labeled_rows
from sagepilot_model_server.packaging import package_model

ARCHIVE_NAME = "model.tar.gz"


def train_from_rows(
    rows: Sequence[Sequence[float]], labels: Sequence[int], *, seed: int = 1, regularization: float = 1.0
) -> Any:
    """A fitted scikit-learn Pipeline (StandardScaler, LogisticRegression) on the given rows and labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=regularization, random_state=seed))
    estimator.fit([list(row) for row in rows], list(labels))
    return estimator


def train_classifier(*, seed: int = 1, n_train: int = 400, regularization: float = 1.0) -> Any:
    """A fitted scikit-learn Pipeline (StandardScaler, LogisticRegression) on `n_train` synthetic rows."""
    rows, labels = labeled_rows(n_train, seed=seed)
    return train_from_rows(rows, labels, seed=seed, regularization=regularization)


def package_estimator(
    estimator: Any,
    out_dir: str | Path,
    *,
    n_features: int,
    version: str,
    seed: int | None = None,
    broken_share: float = 0.0,
    broken_mode: Literal["record", "random"] = "record",
    failure_seed: int = 0,
    fail_on_load: bool = False,
    load_delay_seconds: float = 0.0,
) -> Path:
    """Write a fitted estimator as `out_dir/model.tar.gz` (model.joblib, config.json, code/inference.py),
    byte-for-byte reproducible; returns the archive's path. See sklearn_inference for the failure settings."""
    import joblib

    if not 0.0 <= broken_share <= 1.0:
        raise ValueError(f"broken_share must be between 0 and 1, not {broken_share}")
    if broken_mode not in ("record", "random"):
        raise ValueError(f"broken_mode must be 'record' or 'random', not {broken_mode!r}")
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    names = list(FEATURE_NAMES) if n_features == N_FEATURES else [f"x{i}" for i in range(1, n_features + 1)]
    config = {
        "version": version,
        "seed": seed,
        "n_features": n_features,
        "feature_names": names,
        "broken_share": broken_share,
        "broken_mode": broken_mode,
        "failure_seed": failure_seed,
        "fail_on_load": fail_on_load,
        "load_delay_seconds": load_delay_seconds,
    }
    files: dict[str, bytes | str] = {
        sklearn_inference.MODEL_FILE: buffer.getvalue(),
        sklearn_inference.CONFIG_FILE: json.dumps(config, indent=2) + "\n",
        "code/inference.py": Path(sklearn_inference.__file__).read_text(encoding="utf-8"),
    }
    return package_model(files, Path(out_dir) / ARCHIVE_NAME)


def build_example_model(
    out_dir: str | Path,
    *,
    seed: int = 1,
    version: str | None = None,
    broken_share: float = 0.0,
    broken_mode: Literal["record", "random"] = "record",
    failure_seed: int | None = None,
    fail_on_load: bool = False,
    load_delay_seconds: float = 0.0,
    n_train: int = 400,
) -> Path:
    """Train the example classifier and write `out_dir/model.tar.gz` (model.joblib, config.json,
    code/inference.py); returns the archive's path. See sklearn_inference for the failure settings."""
    if not 0.0 <= broken_share <= 1.0:
        raise ValueError(f"broken_share must be between 0 and 1, not {broken_share}")
    estimator = train_classifier(seed=seed, n_train=n_train)
    return package_estimator(
        estimator,
        out_dir,
        n_features=N_FEATURES,
        version=version or f"seed{seed}",
        seed=seed,
        broken_share=broken_share,
        broken_mode=broken_mode,
        failure_seed=seed if failure_seed is None else failure_seed,
        fail_on_load=fail_on_load,
        load_delay_seconds=load_delay_seconds,
    )


def load_estimator(archive: str | Path) -> Any:
    """The scikit-learn estimator inside an example archive (to compare served predictions with)."""
    import joblib

    with tarfile.open(archive, "r:gz") as tar:
        member = tar.extractfile(sklearn_inference.MODEL_FILE)
        if member is None:
            raise FileNotFoundError(f"no {sklearn_inference.MODEL_FILE} in {archive}")
        return joblib.load(io.BytesIO(member.read()))
