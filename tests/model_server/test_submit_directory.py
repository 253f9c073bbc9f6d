"""A user's entry point from SAGEMAKER_SUBMIT_DIRECTORY and SAGEMAKER_PROGRAM, as SageMaker's scikit-learn
container runs a model deployed with `entry_point` and `source_dir` (the SDK uploads the sources as a
`sourcedir.tar.gz` and passes both variables): the module comes from the sources, never silently from the
archive's fallback code/inference.py."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from sagepilot_model_server import load_model

from .test_model_loading import SUM_MODEL, write_model

DOUBLE_MODEL = """
from submit_dir_helpers_for_sagepilot_test import double


def model_fn(model_dir):
    return "double"


def predict_fn(data, model):
    return [double(sum(record)) for record in data]
"""


def sourcedir(tmp_path: Path) -> Path:
    sources = write_model(
        tmp_path / "src",
        files={
            "entry.py": DOUBLE_MODEL,
            "submit_dir_helpers_for_sagepilot_test.py": "def double(x):\n    return 2 * x\n",
        },
    )
    archive = tmp_path / "sourcedir.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sources.iterdir():
            tar.add(path, arcname=path.name)
    return archive


@pytest.mark.parametrize("form", ["archive", "file-uri", "directory"])
def test_the_entry_point_of_the_submit_directory_runs(tmp_path, monkeypatch, form) -> None:
    model_dir = write_model(tmp_path / "m", SUM_MODEL)  # the archive's own fallback code
    archive = sourcedir(tmp_path)
    location = {"archive": str(archive), "file-uri": f"file://{archive}", "directory": str(tmp_path / "src")}[form]
    monkeypatch.setenv("SAGEMAKER_SUBMIT_DIRECTORY", location)
    monkeypatch.setenv("SAGEMAKER_PROGRAM", "entry.py")
    handler = load_model(model_dir)
    try:
        assert handler.invoke(b"1,2\n", "text/csv", "text/csv") == (b"6.0\n", "text/csv")
    finally:
        handler.close()


def test_unpacked_sources_are_removed_on_close(tmp_path) -> None:
    handler = load_model(
        write_model(tmp_path / "m", SUM_MODEL), program="entry.py", submit_dir=str(sourcedir(tmp_path))
    )
    assert handler.code_source is not None
    unpacked = handler.code_source.model_dir
    assert (unpacked / "entry.py").is_file()
    handler.close()
    assert not unpacked.exists()


def test_a_repacked_model_names_its_own_code_directory(tmp_path) -> None:
    model_dir = write_model(tmp_path / "m", files={"code/entry.py": SUM_MODEL})
    handler = load_model(model_dir, program="entry.py", submit_dir="/opt/ml/model/code")
    assert handler.invoke(b"1,2\n", "text/csv", "text/csv") == (b"3.0\n", "text/csv")


def test_a_named_program_missing_from_the_sources_fails_the_load(tmp_path) -> None:
    model_dir = write_model(tmp_path / "m", SUM_MODEL)
    with pytest.raises(FileNotFoundError, match=r"SAGEMAKER_PROGRAM 'missing\.py' is not in"):
        load_model(model_dir, program="missing.py", submit_dir=str(sourcedir(tmp_path)))
    with pytest.raises(FileNotFoundError, match=r"neither a directory nor a sourcedir\.tar\.gz"):
        load_model(model_dir, program="entry.py", submit_dir=str(tmp_path / "nowhere.tar.gz"))
