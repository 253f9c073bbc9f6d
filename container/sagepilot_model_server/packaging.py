"""Writing model archives: `model.tar.gz` with the model file(s) and `code/inference.py`, byte-for-byte
reproducible (fixed timestamps and owners), as SageMaker's ModelDataUrl expects."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path


def package_model(files: Mapping[str, bytes | str], archive: str | Path) -> Path:
    """Write `files` (archive path -> content; e.g. "model.joblib", "code/inference.py") as a model.tar.gz."""
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    directories = sorted({str(parent) for name in files for parent in Path(name).parents if str(parent) != "."})
    with (
        archive.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for directory in directories:
            tar.addfile(_info(directory, tarfile.DIRTYPE, 0o755, 0))
        for name in sorted(files):
            content = files[name]
            data = content.encode("utf-8") if isinstance(content, str) else content
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return archive


def package_model_dir(model_dir: str | Path, archive: str | Path) -> Path:
    """Write the content of a directory (its files, recursively) as a model.tar.gz."""
    root = Path(model_dir)
    files = {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}
    return package_model(files, archive)


def _info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
