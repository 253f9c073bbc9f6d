"""Artifact size: what `sam deploy` would upload, zipped, without what the Lambda runtime provides.

Uses the SAM build in .aws-sam/build (running `make build` first when a source is newer than it). Each
function's folder and each layer's folder are zipped the way SAM zips them (deflate, default level);
a function's size is its own zip plus its layers'; the total counts every function and every layer
once, which is what is uploaded. The baseline is the AWS SDK that the runtime already carries
(boto3 + botocore + s3transfer from this venv, zipped the same way): what vendoring it would add.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import ROOT, Figure, SectionResult, Target
from sagepilot_sandbox.stack.template import load_template

BUILD_DIR = ROOT / ".aws-sam" / "build"
TARGET_TOTAL_BYTES = 5_000_000  # "under 5 MB zipped in total" (decimal megabytes)

# Distributions the Lambda Python runtime already provides (on sys.path after /opt/python), so a layer
# that carries them ships dead weight; they are left out of the measured zips. Top-level names as
# installed, with their *.dist-info / *.data folders.
RUNTIME_PROVIDED = {
    "boto3",  # the AWS SDK for Python
    "botocore",  # its core (service models, signing, retries)
    "s3transfer",  # boto3's managed transfers
    "jmespath",  # botocore's query language (also a powertools dependency)
    "dateutil",  # python-dateutil, botocore's date parsing
    "python_dateutil",
    "urllib3",  # botocore's HTTP client
    "six",  # python-dateutil's py2/py3 shim (six.py)
}
SDK_BASELINE = ("boto3", "botocore", "s3transfer")
SOURCES = ("template.yaml", "functions", "layers")


def _distribution(name: str) -> str:
    """Top-level entry -> distribution-ish name: `botocore-1.2.dist-info` -> botocore, `six.py` -> six."""
    stem = name
    for suffix in (".dist-info", ".data", ".egg-info", ".py"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            if suffix != ".py":
                stem = stem.rsplit("-", 1)[0]
    return stem.replace("-", "_").lower()


def _files(folder: Path, *, exclude: set[str]) -> Iterator[tuple[Path, str]]:
    """(path, name in the zip) for every file under folder, minus excluded top-level entries of python/
    (a layer) or of the folder itself (a function)."""
    for top in sorted(folder.iterdir()):
        if _distribution(top.name) in exclude:
            continue
        if top.is_dir() and top.name == "python":
            for inner in _files(top, exclude=exclude):
                yield inner[0], f"python/{inner[1]}"
            continue
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in paths:
            yield path, path.relative_to(folder).as_posix()


def zip_size(folder: Path, *, exclude: set[str]) -> tuple[int, int, int, list[str]]:
    """(zipped bytes, unzipped bytes, files, excluded top-level entries)."""
    excluded = sorted(
        p.name
        for base in (folder, folder / "python")
        if base.is_dir()
        for p in base.iterdir()
        if _distribution(p.name) in exclude
    )
    buffer = io.BytesIO()
    unzipped = count = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in _files(folder, exclude=exclude):
            archive.write(path, name)
            unzipped += path.stat().st_size
            count += 1
    return len(buffer.getvalue()), unzipped, count, excluded


def _sdk_baseline() -> tuple[int, list[str]]:
    import boto3

    site = Path(boto3.__file__).resolve().parents[1]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in SDK_BASELINE:
            for path in sorted((site / package).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    archive.write(path, path.relative_to(site).as_posix())
    return len(buffer.getvalue()), [str(site / p) for p in SDK_BASELINE]


def _newest_source() -> tuple[float, str]:
    newest, which = 0.0, ""
    for entry in SOURCES:
        path = ROOT / entry
        paths = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for p in paths:
            if "__pycache__" in p.parts or p.suffix == ".pyc":
                continue
            mtime = p.stat().st_mtime
            if mtime > newest:
                newest, which = mtime, str(p.relative_to(ROOT))
    return newest, which


def ensure_build(log: Path, allow_build: bool) -> str:
    """Reuse .aws-sam/build if it is newer than every source, else run `make build`."""
    built = BUILD_DIR / "template.yaml"
    newest, which = _newest_source()
    if built.exists() and built.stat().st_mtime >= newest:
        return "reused .aws-sam/build (newer than every source)"
    if not allow_build:
        return f"reused a STALE .aws-sam/build ({which} is newer); --no-build was given"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            ["make", "build"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"make build failed (exit {done.returncode}); see {log}")
    return f"ran make build ({which} was newer than the build); log in {log.resolve().relative_to(ROOT)}"


def run(log_dir: Path, allow_build: bool = True) -> SectionResult:
    started = time.monotonic()
    result = SectionResult("artifact size")
    try:
        how = ensure_build(log_dir / "sam-build.log", allow_build)
    except RuntimeError as exc:
        result.figures.append(
            Figure(
                result.section,
                "total (functions + layers)",
                None,
                "bytes",
                target=Target("value", "<", TARGET_TOTAL_BYTES),
                error=str(exc),
            )
        )
        result.seconds = time.monotonic() - started
        return result
    result.text.append(f"artifact size: {how}")
    template = load_template(BUILD_DIR / "template.yaml")
    resources: dict[str, Any] = template["Resources"]
    global_layers = template.get("Globals", {}).get("Function", {}).get("Layers", [])
    layers: dict[str, dict[str, Any]] = {}
    functions: dict[str, dict[str, Any]] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Serverless::LayerVersion":
            folder = BUILD_DIR / str(resource["Properties"]["ContentUri"])
            zipped, unzipped, files, excluded = zip_size(folder, exclude=RUNTIME_PROVIDED)
            pycs = [p for p, _ in _files(folder, exclude=RUNTIME_PROVIDED) if p.suffix == ".pyc"]
            layers[logical_id] = {
                "zipped": zipped,
                "unzipped": unzipped,
                "files": files,
                "excluded": excluded,
                "pycFiles": len(pycs),
                "pycUnzipped": sum(p.stat().st_size for p in pycs),
            }
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        folder = BUILD_DIR / str(props.get("CodeUri", logical_id))
        zipped, unzipped, files, excluded = zip_size(folder, exclude=RUNTIME_PROVIDED)
        refs = props.get("Layers", global_layers)
        own = [r["Ref"] for r in refs if isinstance(r, dict) and r.get("Ref") in layers]
        foreign = [r for r in refs if not (isinstance(r, dict) and r.get("Ref") in layers)]
        functions[logical_id] = {
            "code": {"zipped": zipped, "unzipped": unzipped, "files": files, "excluded": excluded},
            "layers": own,
            "foreignLayers": [str(f) for f in foreign],
            "zippedWithLayers": zipped + sum(layers[name]["zipped"] for name in own),
            "unzippedWithLayers": unzipped + sum(layers[name]["unzipped"] for name in own),
        }
    total = sum(f["code"]["zipped"] for f in functions.values()) + sum(layer["zipped"] for layer in layers.values())
    sdk, sdk_paths = _sdk_baseline()
    label = "AWS SDK the runtime provides, zipped (boto3+botocore+s3transfer)"
    for logical_id, f in sorted(functions.items()):
        result.figures.append(
            Figure(
                result.section,
                f"{logical_id}: code + layers",
                f["zippedWithLayers"],
                "bytes",
                baseline=sdk,
                baseline_label=label,
                note=f"code {f['code']['zipped']:,} B zipped; unzipped with layers {f['unzippedWithLayers']:,} B",
            )
        )
    for name, layer in sorted(layers.items()):
        left_out = ", ".join(layer["excluded"]) or "nothing"
        result.text.append(
            f"layer {name}: {layer['zipped']:,} B zipped, {layer['unzipped']:,} B unzipped, {layer['files']} files"
            f" (of them {layer['pycFiles']} .pyc, {layer['pycUnzipped']:,} B unzipped); left out as"
            f" runtime-provided: {left_out}"
        )
    result.figures.append(
        Figure(
            result.section,
            f"total: {len(functions)} functions + {len(layers)} layer(s), each once",
            total,
            "bytes",
            baseline=sdk,
            baseline_label=label,
            target=Target("value", "<", TARGET_TOTAL_BYTES),
        )
    )
    result.details = {
        "build": how,
        "functions": functions,
        "layers": layers,
        "totalZipped": total,
        "sdkBaselineZipped": sdk,
        "sdkBaselineFrom": sdk_paths,
        "runtimeProvidedExcluded": sorted(RUNTIME_PROVIDED),
    }
    result.seconds = time.monotonic() - started
    return result
