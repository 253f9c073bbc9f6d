"""Cold start per function: the Lambda init phase in a fresh process, against the floor any Python
function that talks to the same services pays.

Arms, each a fresh process started by this one (timed from the instant it is started until the handler
module is imported and its module-level clients exist, which is what Lambda's init phase does):

- as shipped (the headline, with the target): the interpreter of the function's runtime (python3.13 from
  the template, found on this machine as the Makefile finds it for `sam build`), running the artifact as
  Lambda receives it: the SAM build's function folder and layer folders zipped the way `sam package` zips
  them (every entry dated 1980-01-01) and unzipped with those dates into .bench/shipped, first on sys.path
  (Lambda's /var/task, then /opt/python), then only what the Lambda runtime itself provides (boto3,
  botocore, ... mirrored from the venv into .bench/runtime-<version>, compiled there once, as Lambda's
  runtime is). No bytecode is written (/var/task and /opt are read-only): whatever the artifact does not
  ship, precompiled and valid, is compiled at every cold start. Environment: what the template gives
  the function, with AWS pointed at a dead local port (nothing leaves the machine).
- floor: the same interpreter, path and environment doing `import boto3` and creating the same boto3
  clients the init creates, found by instrumenting the init (botocore Session.create_client), so the floor
  follows the functions as they change.
- warm bytecode cache (informational, the ceiling): the build folders with every module's bytecode
  compiled on this machine beforehand (PYTHONPYCACHEPREFIX=.bench/pycache).
- without bytecode (informational): the shipped artifact minus its .pyc files, which is what SAM's
  `BuildMethod: python3.13` ships.
- dev venv (informational, `--cold-dev-venv`): the same init and floor on this venv's interpreter with the
  source layer folder.

Whether the shipped bytecode is used is checked, not assumed: one run of the shipped init with `-v` says,
for every module it imports from the artifact, whether its code came from the .pyc or was compiled from
the source; a layer module compiled at start fails the section's bytecode row.

Without the runtime's Python or a SAM build, `init` falls back to the venv's interpreter and the
source folders (said in the output). Bytecode caches go to .bench, never into the venv or the build. Runs
alternate (ABC.., ..CBA) so that a slow spell of the machine hits every arm alike; medians are compared.
Each function gets a diagnosis from `-X importtime`: what its init imports that the floor does not (by
package, and the sagepilot modules by name), and the garbage collection each does.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.artifacts import RUNTIME_PROVIDED, _distribution
from bench.common import (
    OUT_DIR,
    PYTHON,
    ROOT,
    Figure,
    Sample,
    SectionResult,
    Target,
    clean_environment,
    paired_ratio_interval,
)
from bench.functions import FunctionInfo, discover

CHILD = Path(__file__).with_name("coldstart_child.py")
TARGET_RATIO = 1.25
DEAD_ENDPOINT = "http://127.0.0.1:9"  # discard port: nothing listens, a call would fail at once
BUILD_DIR = ROOT / ".aws-sam" / "build"
SHIPPED_DIR = OUT_DIR / "shipped"  # the build as Lambda unzips it
PYCACHE = OUT_DIR / "pycache"
SECTION = "cold start"


class ChildFailed(Exception):
    pass


@dataclass
class Arm:
    label: str
    python: str
    args: list[str]
    env: dict[str, str]
    cwd: Path


def run_child(arm: Arm, *flags: str) -> tuple[float, dict[str, Any], str]:
    """Start the child; return (ms from process start to init done, its JSON line, its stderr)."""
    started = time.monotonic_ns()
    done = subprocess.run(
        [arm.python, "-P", *flags, str(CHILD), *arm.args],
        env=arm.env,
        cwd=arm.cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        raise ChildFailed(f"{arm.label} exited {done.returncode}: {tail}")
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    return (int(payload["ready_ns"]) - started) / 1e6, payload, done.stderr


# ---------------------------------------------------------------------------------------- interpreters
def _version_of(python: str) -> str | None:
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def runtime_python(runtime: str) -> str | None:
    """An interpreter of the Lambda runtime's version (`python3.13` -> 3.13): the venv's, pyenv's, PATH's."""
    wanted = runtime.removeprefix("python")
    if f"{sys.version_info.major}.{sys.version_info.minor}" == wanted:
        return PYTHON
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(f"{pyenv_root}/versions/{wanted}*/bin/python{wanted}"), reverse=True)
    candidates.append(shutil.which(f"python{wanted}") or "")
    for candidate in filter(None, candidates):
        if _version_of(candidate) == wanted:
            return candidate
    return None


def _venv_site() -> Path:
    import boto3

    return Path(str(boto3.__file__)).resolve().parents[1]


# ---------------------------------------------------------------------------------------- the runtime
def _has_source(folder: Path) -> bool:
    return any(True for _ in folder.rglob("*.py"))


def _mirror(source: Path, target: Path) -> None:
    """`target` as a tree of real folders holding links to `source`'s files (a folder without Python
    source, e.g. botocore/data, is one link), so that bytecode compiled for it lands in `target`."""
    if source.is_file():
        if not target.exists():
            target.symlink_to(source)
        return
    if not _has_source(source):
        if not target.exists():
            target.symlink_to(source)
        return
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name != "__pycache__":
            _mirror(entry, target / entry.name)


def runtime_dir(python: str, version: str) -> Path:
    """A folder holding only what the Lambda runtime provides (mirrored from this venv's site-packages),
    compiled for `version` once, as the runtime's own packages are on Lambda."""
    site = _venv_site()
    folder = OUT_DIR / f"runtime-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    for entry in site.iterdir():
        if _distribution(entry.name) in RUNTIME_PROVIDED:
            _mirror(entry, folder / entry.name)
    done = subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", str(folder)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ChildFailed(f"compiling the runtime's packages failed: {done.stdout[-400:]}{done.stderr[-400:]}")
    return folder


# ---------------------------------------------------------------------------------------- the artifact
def _sam_zip(folder: Path) -> bytes:
    """`folder` zipped as `sam package` zips it (samcli.lib.package.utils.make_zip): a bare ZipInfo per
    file, so every entry is dated 1980-01-01 00:00."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, _, files in os.walk(folder, followlinks=True):
            for name in files:
                path = Path(root) / name
                info = zipfile.ZipInfo(path.relative_to(folder).as_posix())
                info.create_system = 3
                info.external_attr = (path.stat().st_mode | 0o444) << 16
                archive.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def unzip_shipped(folder: Path, target: Path, *, bytecode: bool = True) -> Path:
    """The build folder as Lambda receives it: zipped like SAM, unzipped with the entries' dates."""
    import io

    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with zipfile.ZipFile(io.BytesIO(_sam_zip(folder))) as archive:
        for info in archive.infolist():
            if not bytecode and ("__pycache__/" in info.filename or info.filename.endswith(".pyc")):
                continue
            path = Path(archive.extract(info, target))
            stamp = time.mktime((*info.date_time, 0, 0, -1))
            os.utime(path, (stamp, stamp))
    return target


def _built_dirs(fn: FunctionInfo) -> tuple[Path, list[Path]] | None:
    """The function's folder and its layers' python/ folders in the SAM build, if built."""
    if not fn.logical_id:
        return None
    code = BUILD_DIR / fn.logical_id
    layers = sorted(p / "python" for p in BUILD_DIR.glob("*") if (p / "python").is_dir())
    if not (code / f"{fn.module.replace('.', '/')}.py").exists() or not layers:
        return None
    return code, layers


@dataclass
class Shipped:
    """The artifact as unzipped on Lambda, with and without its bytecode."""

    code: Path
    layers: list[Path]
    bare_code: Path
    bare_layers: list[Path]
    pyc_files: int  # .pyc files the layers ship


def ship(code: Path, layers: list[Path], cache: dict[Path, Path]) -> Shipped:
    def unzipped(folder: Path, bytecode: bool) -> Path:
        key = folder if bytecode else folder / "(bare)"
        if key not in cache:
            kind = "with-pyc" if bytecode else "without-pyc"
            cache[key] = unzip_shipped(folder, SHIPPED_DIR / kind / folder.name, bytecode=bytecode)
        return cache[key]

    # A layer zip holds python/...: Lambda unzips it into /opt, so /opt/python is on sys.path.
    shipped_layers = [unzipped(layer.parent, True) / "python" for layer in layers]
    bare_layers = [unzipped(layer.parent, False) / "python" for layer in layers]
    pyc_files = sum(1 for layer in shipped_layers for _ in layer.rglob("*.pyc"))
    return Shipped(unzipped(code, True), shipped_layers, unzipped(code, False), bare_layers, pyc_files)


# ---------------------------------------------------------------------------------------- bytecode check
_CODE_FROM = re.compile(r"^# code object from '?(.+?)'?$")


def bytecode_use(arm: Arm, roots: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """For each artifact folder: the modules the init imported from it, by where their code came from
    (`-v` prints `# code object from <.pyc or .py>` for every module loaded from a file)."""
    _, _, stderr = run_child(arm, "-v")
    found: dict[str, dict[str, Any]] = {name: {"fromPyc": 0, "compiled": []} for name in roots}
    for line in stderr.splitlines():
        match = _CODE_FROM.match(line.strip())
        if not match:
            continue
        path = Path(match.group(1))
        for name, root in roots.items():
            if path.is_relative_to(root):
                if path.suffix == ".pyc":
                    found[name]["fromPyc"] += 1
                else:
                    found[name]["compiled"].append(str(path.relative_to(root)))
    return found


# ---------------------------------------------------------------------------------------- diagnosis
_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def importtime(arm: Arm) -> dict[str, float]:
    """Self time (ms) of every module the child imports."""
    _, _, stderr = run_child(arm, "-X", "importtime")
    modules: dict[str, float] = {}
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            modules[match.group(4)] = int(match.group(1)) / 1000
    return modules


def diagnose(handler: Arm, floor: Arm, repeats: int = 3) -> dict[str, Any]:
    """What the handler's init imports that the floor does not, by top-level package (median ms)."""
    handler_runs = [importtime(handler) for _ in range(repeats)]
    floor_runs = [importtime(floor) for _ in range(repeats)]
    floor_modules = set().union(*floor_runs)
    module_name = handler.args[2]
    groups: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = {}
    for run in handler_runs:
        per_group: dict[str, float] = defaultdict(float)
        n: dict[str, int] = defaultdict(int)
        for module, ms in run.items():
            if module not in floor_modules and module != module_name:
                per_group[module.split(".")[0]] += ms
                n[module.split(".")[0]] += 1
        for group, ms in per_group.items():
            groups[group].append(ms)
        counts.update(n)
    extra: list[dict[str, Any]] = sorted(
        ({"package": g, "ms": Sample(tuple(v)).median, "modules": counts[g]} for g, v in groups.items()),
        key=lambda e: -float(e["ms"]),
    )
    own = sorted({m for run in handler_runs for m in run if m == "sagepilot" or m.startswith("sagepilot.")})
    return {
        "extraImportsByPackage": extra,
        "extraImportsTotalMs": sum(float(e["ms"]) for e in extra),
        "sagepilotModules": own,
        "handlerModuleSelfMs": Sample(tuple(r.get(module_name, 0.0) for r in handler_runs)).median,
        "note": (
            f"'{module_name}' self time is the handler module's own body: settings, wiring and the boto3 "
            "client creation (the floor spends the same creating its clients, outside any import). Self times "
            "include any garbage collection that happened to run during that module's import."
        ),
    }


# ---------------------------------------------------------------------------------------- arms
def _environment(fn: FunctionInfo, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = clean_environment(fn.environment)
    env.update(
        AWS_ENDPOINT_URL=DEAD_ENDPOINT,
        AWS_LAMBDA_FUNCTION_NAME=f"bench-{fn.name}",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
        AWS_MAX_ATTEMPTS="1",
    )
    env.update(extra or {})
    return env


@dataclass
class Setup:
    """Where the arms run: interpreter, code and layer folders, extra path, and how it was chosen."""

    python: str
    version: str
    code: Path
    layers: list[Path]
    pythonpath: list[Path]
    how: str
    shipped: Shipped | None = None
    notes: list[str] = field(default_factory=list)


def primary_setup(fn: FunctionInfo, unzipped: dict[Path, Path]) -> Setup:
    runtime = runtime_python(fn.runtime)
    built = _built_dirs(fn)
    if runtime is None:
        return Setup(
            PYTHON,
            f"{sys.version_info.major}.{sys.version_info.minor}",
            fn.code_dir,
            fn.layer_dirs,
            [],
            f"no {fn.runtime} interpreter found: the venv's Python and the source folders",
        )
    version = fn.runtime.removeprefix("python")
    if built is None:
        return Setup(
            runtime,
            version,
            fn.code_dir,
            fn.layer_dirs,
            [runtime_dir(runtime, version), _venv_site()],
            f"{fn.runtime} ({runtime}); no SAM build: source folders",
        )
    code, layers = built
    return Setup(
        runtime,
        version,
        code,
        layers,
        [runtime_dir(runtime, version)],
        f"{fn.runtime} ({runtime}), the SAM build as shipped (zipped like SAM, unzipped), runtime packages only",
        shipped=ship(code, layers, unzipped),
    )


def _arm_env(fn: FunctionInfo, setup: Setup, prefix: Path | None) -> dict[str, str]:
    """With a bytecode cache prefix, bytecode is read and written there only; without one, read from the
    folders' own __pycache__ and never written (Lambda's /var/task and /opt are read-only)."""
    extra = {"PYTHONPYCACHEPREFIX": str(prefix)} if prefix else {"PYTHONDONTWRITEBYTECODE": "1"}
    if setup.pythonpath:
        extra["PYTHONPATH"] = os.pathsep.join(str(p) for p in setup.pythonpath)
    return _environment(fn, extra)


def _init_arm(label: str, fn: FunctionInfo, setup: Setup, code: Path, layers: list[Path], env: dict[str, str]) -> Arm:
    return Arm(label, setup.python, ["handler", str(code), fn.module, *map(str, layers)], env, code)


def measure_function(
    fn: FunctionInfo, reps: int, shipped: bool, dev_venv: bool, unzipped: dict[Path, Path]
) -> tuple[list[Figure], dict[str, Any], list[str]]:
    setup = primary_setup(fn, unzipped)
    art = setup.shipped
    lambda_env = _arm_env(fn, setup, None)
    if art is not None:
        handler = _init_arm(f"{fn.name} as shipped", fn, setup, art.code, art.layers, lambda_env)
        headline = f"{fn.name}: init as shipped (python {setup.version})"
    else:  # no build: the source folders, bytecode cached (nothing is "as shipped" without an artifact)
        warm_env = _arm_env(fn, setup, PYCACHE / f"py{setup.version}-warm")
        handler = _init_arm(f"{fn.name} init", fn, setup, setup.code, setup.layers, warm_env)
        headline = f"{fn.name}: init from source folders (python {setup.version})"
    probe = Arm(f"{fn.name} probe", setup.python, ["probe", *handler.args[1:]], handler.env, handler.cwd)
    _, payload, _ = run_child(probe)
    services: list[str] = list(payload["clients"])
    floor = Arm(f"{fn.name} floor", setup.python, ["floor", ",".join(services)], handler.env, handler.cwd)
    arms = [handler, floor]

    extra_arms: list[tuple[Arm, str, str]] = []  # (arm, figure name, note)
    if art is not None:
        warm_env = _arm_env(fn, setup, PYCACHE / f"py{setup.version}-warm")
        warm = _init_arm(f"{fn.name} warm cache", fn, setup, setup.code, setup.layers, warm_env)
        extra_arms.append(
            (
                warm,
                f"{fn.name}: init with a warm bytecode cache (the ceiling)",
                "informational: the build folders, every module compiled on this machine beforehand",
            )
        )
        if shipped:
            bare = _init_arm(f"{fn.name} no pyc", fn, setup, art.bare_code, art.bare_layers, lambda_env)
            extra_arms.append(
                (
                    bare,
                    f"{fn.name}: init without bytecode in the artifact (SAM's python3.13 build)",
                    "informational: the same artifact minus its .pyc; Lambda compiles the layer at every cold start",
                )
            )
    if dev_venv and setup.python != PYTHON:
        dev_env = _environment(fn, {"PYTHONPYCACHEPREFIX": str(PYCACHE / "dev-venv")})
        source_layers = [str(d) for d in fn.layer_dirs]
        dev_args = ["handler", str(fn.code_dir), fn.module, *source_layers]
        dev_init = Arm(f"{fn.name} dev init", PYTHON, dev_args, dev_env, fn.code_dir)
        dev_floor = Arm(f"{fn.name} dev floor", PYTHON, ["floor", ",".join(services)], dev_env, fn.code_dir)
        extra_arms.append((dev_init, "", ""))
        extra_arms.append((dev_floor, "", ""))
    arms += [a for a, _, _ in extra_arms]

    for arm in arms:  # warm-up: bytecode caches written, files in the page cache
        run_child(arm)
    samples: dict[str, list[float]] = {arm.label: [] for arm in arms}
    cpu: dict[str, list[float]] = {arm.label: [] for arm in arms}
    gc_ms: dict[str, list[float]] = {arm.label: [] for arm in arms}
    for i in range(reps):
        for arm in arms if i % 2 == 0 else list(reversed(arms)):
            ms, payload, _ = run_child(arm)
            samples[arm.label].append(ms)
            cpu[arm.label].append(float(payload["cpu_s"]) * 1000)
            gc_ms[arm.label].append(float(payload["gc_s"]) * 1000)

    def sample(arm: Arm, of: dict[str, list[float]] = samples) -> Sample:
        return Sample(tuple(of[arm.label]))

    h, f = sample(handler), sample(floor)
    h_cpu, f_cpu = sample(handler, cpu), sample(floor, cpu)
    h_gc, f_gc = sample(handler, gc_ms), sample(floor, gc_ms)
    paired, p25, p75 = paired_ratio_interval(h.values, f.values)
    clients = ", ".join(services) or "none"
    figures = [
        Figure(
            SECTION,
            headline,
            h.median,
            "ms",
            baseline=f.median,
            baseline_label=f"import boto3 + {len(services)} client(s): {clients}",
            target=Target("ratio", "<=", TARGET_RATIO),
            spread=h.spread("ms"),
            note=(
                f"floor {f.spread('ms')}; paired ratio median {paired:.2f}x (IQR {p25:.2f}-{p75:.2f}); "
                f"CPU time {h_cpu.median:.0f} vs {f_cpu.median:.0f} ms ({h_cpu.median / f_cpu.median:.2f}x), "
                f"of it garbage collection {h_gc.median:.0f} vs {f_gc.median:.0f} ms"
            ),
        )
    ]
    details: dict[str, Any] = {
        "function": fn.name,
        "logicalId": fn.logical_id,
        "setup": {
            "python": setup.python,
            "version": setup.version,
            "code": handler.args[1],
            "layers": handler.args[3:],
            "pythonpath": [str(p) for p in setup.pythonpath],
            "how": setup.how,
        },
        "clients": services,
        "handler": h.to_json(),
        "floor": f.to_json(),
        "pairedRatio": {"median": paired, "p25": p25, "p75": p75},
        "cpuMs": {"handler": h_cpu.to_json(), "floor": f_cpu.to_json()},
        "gcMs": {"handler": h_gc.to_json(), "floor": f_gc.to_json()},
        "informational": {},
    }
    dev_samples: list[Sample] = []
    for arm, name, note in extra_arms:
        s = sample(arm)
        details["informational"][arm.label] = s.to_json()
        if not name:
            dev_samples.append(s)
            continue
        figures.append(
            Figure(
                SECTION,
                name,
                s.median,
                "ms",
                baseline=f.median,
                baseline_label="the same floor",
                spread=s.spread("ms"),
                note=note,
            )
        )
    if len(dev_samples) == 2:
        dh, df = dev_samples
        figures.append(
            Figure(
                SECTION,
                f"{fn.name}: init on the dev venv (python {sys.version_info.major}.{sys.version_info.minor})",
                dh.median,
                "ms",
                baseline=df.median,
                baseline_label="the same floor on the dev venv",
                spread=dh.spread("ms"),
                note=f"informational: source layer folder; floor {df.spread('ms')}",
            )
        )

    text = [f"{fn.name}: {setup.how}"]
    if art is not None:
        roots = {"layer": art.layers[0].parent, "code": art.code}
        use = bytecode_use(handler, roots)
        details["bytecode"] = use
        details["pycFilesShipped"] = art.pyc_files
        compiled = use["layer"]["compiled"]
        text.append(
            f"{fn.name}: of the layer's modules its init imports, {use['layer']['fromPyc']} came from the shipped "
            f".pyc and {len(compiled)} were compiled at start"
            + (f" ({', '.join(compiled[:5])}{', ...' if len(compiled) > 5 else ''})" if compiled else "")
            + f"; its own code compiled at start: {', '.join(use['code']['compiled']) or 'nothing'}"
        )
    diagnosis = diagnose(handler, floor)
    details["diagnosis"] = diagnosis
    extra = diagnosis["extraImportsByPackage"][:6]
    listed = ", ".join(f"{e['package']} {e['ms']:.1f} ms ({e['modules']} modules)" for e in extra)
    services_loaded = sorted(
        {m.split(".")[2] for m in diagnosis["sagepilotModules"] if m.startswith("sagepilot.services.")}
    )
    over = figures[0].passed is False
    text.append(
        f"{fn.name} init is {h.median - f.median:.0f} ms over its floor ({figures[0].ratio or 0:.2f}x"
        f"{' > ' if over else ' <= '}{TARGET_RATIO}x); CPU {h_cpu.median - f_cpu.median:+.0f} ms. Modules its init "
        f"imports that the floor does not (-X importtime self time, median of 3): {listed}; of sagepilot "
        f"{len(diagnosis['sagepilotModules'])} modules, services: {', '.join(services_loaded) or 'none'}; garbage "
        f"collection during init {h_gc.median:.0f} ms vs {f_gc.median:.0f} ms for the floor."
    )
    return figures, details, text


def run(reps: int = 15, shipped: bool = True, dev_venv: bool = False, only: list[str] | None = None) -> SectionResult:
    started = time.monotonic()
    result = SectionResult(SECTION)
    functions = [fn for fn in discover() if not only or fn.name in only]
    result.details["functions"] = {}
    result.details["method"] = {"reps": reps, "endpoint": DEAD_ENDPOINT, "targetRatio": TARGET_RATIO}
    unzipped: dict[Path, Path] = {}
    compiled_at_start: dict[str, int] = {}
    pyc_files = 0
    for fn in functions:
        print(f"  cold start: {fn.name} ({reps} interleaved runs per arm)", flush=True)
        result.text += fn.warnings
        try:
            figures, details, text = measure_function(fn, reps, shipped, dev_venv, unzipped)
        except ChildFailed as exc:
            result.figures.append(
                Figure(
                    SECTION,
                    f"{fn.name}: init",
                    None,
                    "ms",
                    target=Target("ratio", "<=", TARGET_RATIO),
                    error=str(exc).splitlines()[-1][:200],
                )
            )
            result.text.append(f"{fn.name}: init failed: {exc}")
            continue
        result.figures += figures
        result.details["functions"][fn.name] = details
        result.text += text
        if "bytecode" in details:
            compiled_at_start[fn.name] = len(details["bytecode"]["layer"]["compiled"])
            pyc_files = details["pycFilesShipped"]
    if compiled_at_start:
        per_function = ", ".join(f"{name} {n}" for name, n in compiled_at_start.items())
        result.figures.append(
            Figure(
                SECTION,
                "layer modules compiled at cold start, as shipped (its .pyc missing or rejected)",
                sum(compiled_at_start.values()),
                "modules",
                target=Target("value", "==", 0),
                note=f"per function: {per_function}; the layer ships {pyc_files} .pyc files (checked with -v)",
            )
        )
    result.seconds = time.monotonic() - started
    return result
