"""Cold start per function: the Lambda init phase in a fresh process, against the floor any Python
function that talks to the same services pays.

Arms, each a fresh process started by this one (timed from the instant it is started until the handler
module is imported and its module-level clients exist, which is what Lambda's init phase does):

- init: the interpreter of the function's runtime (python3.13 from the template, found on this machine
  as the Makefile finds it for `sam build`), the function's folder and its layers' folders from the SAM
  build first on sys.path (Lambda's /var/task, then /opt/python), then only what the Lambda runtime
  itself provides (boto3, botocore, ... linked from the venv into .bench/runtime), with the environment
  the template gives the function and AWS pointed at a dead local port (nothing leaves the machine).
- floor: the same interpreter and path doing `import boto3` and creating the same boto3 clients the
  init creates, found by instrumenting the init (botocore Session.create_client), so the floor follows
  the functions as they change.
- as shipped (informational): the init without the layer's bytecode. SAM puts no .pyc in the artifact
  and /var/task, /opt are read-only, so Lambda compiles the package and powertools on every cold start
  (the runtime's own boto3 is taken to be precompiled, as here).
- dev venv (informational, `--cold-dev-venv`): the same init and floor on this venv's interpreter with the
  source layer folder.

Without the runtime's Python or a SAM build, `init` falls back to the venv's interpreter and the
source folders (said in the output). Bytecode caches go to .bench/pycache, never into the venv or the
build. Runs alternate (ABC.., ..CBA) so that a slow spell of the machine hits every arm alike; medians
are compared. A function over its target gets a diagnosis from `-X importtime`: what its init imports
that the floor does not, and the garbage collection each does.
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
from collections import defaultdict
from dataclasses import dataclass
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
RUNTIME_DIR = OUT_DIR / "runtime"  # what Lambda's /var/runtime provides, linked from the venv
PYCACHE = OUT_DIR / "pycache"


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


def runtime_dir() -> Path:
    """A folder holding only what the Lambda runtime provides (links into this venv's site-packages)."""
    site = _venv_site()
    RUNTIME_DIR.mkdir(parents=True, exist_ok=True)
    for entry in site.iterdir():
        if _distribution(entry.name) in RUNTIME_PROVIDED:
            link = RUNTIME_DIR / entry.name
            if not link.exists():
                link.symlink_to(entry)
    return RUNTIME_DIR


def _built_dirs(fn: FunctionInfo) -> tuple[Path, list[Path]] | None:
    """The function's folder and its layers' python/ folders in the SAM build, if built."""
    if not fn.logical_id:
        return None
    code = BUILD_DIR / fn.logical_id
    layers = sorted(p / "python" for p in BUILD_DIR.glob("*") if (p / "python").is_dir())
    if not (code / f"{fn.module.replace('.', '/')}.py").exists() or not layers:
        return None
    return code, layers


def _has_bytecode(dirs: list[Path]) -> bool:
    return any(next(d.rglob("__pycache__"), None) is not None for d in dirs)


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
    return {
        "extraImportsByPackage": extra,
        "extraImportsTotalMs": sum(float(e["ms"]) for e in extra),
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
    """Where the primary arms run: interpreter, code and layer folders, extra path, and how it was chosen."""

    python: str
    version: str
    code: Path
    layers: list[Path]
    pythonpath: list[Path]
    how: str


def primary_setup(fn: FunctionInfo) -> Setup:
    runtime = runtime_python(fn.runtime)
    built = _built_dirs(fn)
    venv_site = _venv_site()
    if runtime is None:
        return Setup(
            PYTHON,
            f"{sys.version_info.major}.{sys.version_info.minor}",
            fn.code_dir,
            fn.layer_dirs,
            [],
            f"no {fn.runtime} interpreter found: the venv's Python and the source folders",
        )
    if built is None:
        return Setup(
            runtime,
            fn.runtime.removeprefix("python"),
            fn.code_dir,
            fn.layer_dirs,
            [runtime_dir(), venv_site],
            f"{fn.runtime} ({runtime}); no SAM build: source folders",
        )
    code, layers = built
    return Setup(
        runtime,
        fn.runtime.removeprefix("python"),
        code,
        layers,
        [runtime_dir()],
        f"{fn.runtime} ({runtime}), SAM build folders, runtime packages only",
    )


def _arm_env(fn: FunctionInfo, setup: Setup, prefix: Path, *, write_bytecode: bool = True) -> dict[str, str]:
    extra = {"PYTHONPYCACHEPREFIX": str(prefix)}
    if setup.pythonpath:
        extra["PYTHONPATH"] = os.pathsep.join(str(p) for p in setup.pythonpath)
    if not write_bytecode:
        extra["PYTHONDONTWRITEBYTECODE"] = "1"
    return _environment(fn, extra)


def measure_function(
    fn: FunctionInfo, reps: int, shipped: bool, dev_venv: bool
) -> tuple[list[Figure], dict[str, Any], list[str]]:
    section = "cold start"
    setup = primary_setup(fn)
    warm = PYCACHE / f"py{setup.version}-warm"
    env = _arm_env(fn, setup, warm)
    layers = [str(d) for d in setup.layers]
    handler = Arm(f"{fn.name} init", setup.python, ["handler", str(setup.code), fn.module, *layers], env, setup.code)
    probe = Arm(f"{fn.name} probe", setup.python, ["probe", str(setup.code), fn.module, *layers], env, setup.code)
    _, payload, _ = run_child(probe)
    services: list[str] = list(payload["clients"])
    floor = Arm(f"{fn.name} floor", setup.python, ["floor", ",".join(services)], env, setup.code)
    arms = [handler, floor]

    shipped_arm: Arm | None = None
    if shipped and setup.code != fn.code_dir and not _has_bytecode([setup.code, *setup.layers]):
        # Its own bytecode cache, holding the runtime's packages only (a floor run fills it); nothing of
        # the artifact is ever written there.
        cold = PYCACHE / f"py{setup.version}-runtime-only"
        run_child(Arm("fill", setup.python, floor.args, _arm_env(fn, setup, cold), setup.code))
        shipped_env = _arm_env(fn, setup, cold, write_bytecode=False)
        shipped_arm = Arm(f"{fn.name} as shipped", setup.python, handler.args, shipped_env, setup.code)
        arms.append(shipped_arm)
    dev: tuple[Arm, Arm] | None = None
    if dev_venv and setup.python != PYTHON:
        dev_env = _environment(fn, {"PYTHONPYCACHEPREFIX": str(PYCACHE / "dev-venv")})
        source_layers = [str(d) for d in fn.layer_dirs]
        dev = (
            Arm(
                f"{fn.name} dev init",
                PYTHON,
                ["handler", str(fn.code_dir), fn.module, *source_layers],
                dev_env,
                fn.code_dir,
            ),
            Arm(f"{fn.name} dev floor", PYTHON, ["floor", ",".join(services)], dev_env, fn.code_dir),
        )
        arms += list(dev)

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
            section,
            f"{fn.name}: init (python {setup.version})",
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
            "code": str(setup.code),
            "layers": layers,
            "pythonpath": [str(p) for p in setup.pythonpath],
            "how": setup.how,
        },
        "clients": services,
        "handler": h.to_json(),
        "floor": f.to_json(),
        "pairedRatio": {"median": paired, "p25": p25, "p75": p75},
        "cpuMs": {"handler": h_cpu.to_json(), "floor": f_cpu.to_json()},
        "gcMs": {"handler": h_gc.to_json(), "floor": f_gc.to_json()},
    }
    if shipped_arm is not None:
        s = sample(shipped_arm)
        figures.append(
            Figure(
                section,
                f"{fn.name}: init as shipped (no .pyc in the artifact)",
                s.median,
                "ms",
                baseline=f.median,
                baseline_label="the same floor (the runtime's packages keep their bytecode)",
                spread=s.spread("ms"),
                note="informational: Lambda compiles the layer and the function at every cold start",
            )
        )
        details["asShipped"] = s.to_json()
    if dev is not None:
        dh, df = sample(dev[0]), sample(dev[1])
        figures.append(
            Figure(
                section,
                f"{fn.name}: init on the dev venv (python {sys.version_info.major}.{sys.version_info.minor})",
                dh.median,
                "ms",
                baseline=df.median,
                baseline_label="the same floor on the dev venv",
                spread=dh.spread("ms"),
                note=f"informational: source layer folder; floor {df.spread('ms')}",
            )
        )
        details["devVenv"] = {"handler": dh.to_json(), "floor": df.to_json()}

    text = [f"{fn.name}: {setup.how}"]
    if figures[0].passed is False:
        diagnosis = diagnose(handler, floor)
        details["diagnosis"] = diagnosis
        extra = diagnosis["extraImportsByPackage"][:6]
        listed = ", ".join(f"{e['package']} {e['ms']:.1f} ms ({e['modules']} modules)" for e in extra)
        text.append(
            f"{fn.name} init is {h.median - f.median:.0f} ms over its floor "
            f"({figures[0].ratio:.2f}x > {TARGET_RATIO}x); CPU {h_cpu.median - f_cpu.median:+.0f} ms. "
            "Modules its init imports that the floor does not "
            f"(-X importtime self time, median of 3): {listed}; garbage collection during init "
            f"{h_gc.median:.0f} ms vs {f_gc.median:.0f} ms for the floor."
        )
    return figures, details, text


def run(reps: int = 15, shipped: bool = True, dev_venv: bool = False, only: list[str] | None = None) -> SectionResult:
    started = time.monotonic()
    result = SectionResult("cold start")
    functions = [fn for fn in discover() if not only or fn.name in only]
    result.details["functions"] = {}
    result.details["method"] = {"reps": reps, "endpoint": DEAD_ENDPOINT, "targetRatio": TARGET_RATIO}
    for fn in functions:
        print(f"  cold start: {fn.name} ({reps} interleaved runs per arm)", flush=True)
        result.text += fn.warnings
        try:
            figures, details, text = measure_function(fn, reps, shipped, dev_venv)
        except ChildFailed as exc:
            result.figures.append(
                Figure(
                    "cold start",
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
    result.seconds = time.monotonic() - started
    return result
