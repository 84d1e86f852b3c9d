"""Build fusedlr wheels for other people: repaired to a manylinux tag, one per Python, smoke-tested.

    python tools/build_wheels.py                      # this Python's wheel into dist/ (make wheel)
    python tools/build_wheels.py --pythons 3.10,3.11,3.12,3.13 --smoke --sdist   # make wheels

For each Python: a build venv with the torch to build against (default: the release this Python
has, e.g. 2.14.1) and the build tools; ``pip wheel --no-build-isolation``; ``auditwheel repair``
to a manylinux tag, with torch's own libraries (and the CUDA runtime and libgomp that torch loads)
left out of the wheel, since the extension must use the ones of the torch it runs beside. With
``--smoke``, a fresh venv of that Python installs the repaired wheel from dist/ (pip resolves the
pinned torch) and runs tools/wheel_smoke.py. With ``--sdist``, ``python -m build --sdist`` writes
the sdist to dist/ and the 3.11 (or first) build venv installs it from source and smoke-tests it.
Venvs are removed after use (each is ~5.5 GB with a CUDA build of torch) unless ``--keep``.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "wheels"
# Sonames the wheel must not carry: torch's libraries, and the CUDA runtime and OpenMP runtime torch
# loads (a second libgomp or libcudart in one process is a bug). They resolve by soname to the
# copies the imported torch already loaded.
EXCLUDE = ["libtorch*.so", "libc10*.so", "libcudart.so.*", "libgomp.so.1"]
BUILD_TOOLS = ["numpy", "pybind11>=2.12", "scikit-build-core>=1.1", "cmake>=3.28", "ninja"]


def log(msg: str) -> None:
    print(f"[wheels {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    """Run and log ``cmd``; a failure ends the script with one line naming the command (its output is above)."""
    line = " ".join(str(c) for c in cmd)
    log("$ " + line)
    try:
        return subprocess.run([str(c) for c in cmd], check=True, **kw)
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"error: exit status {e.returncode} from: {line}") from None


def find_python(version: str) -> Path:
    """An interpreter for ``version`` ("3.12"): this one, python3.12 on PATH, or pyenv's."""
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":
        return Path(sys.executable)
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"), reverse=True)
    candidates.append(shutil.which(f"python{version}"))  # a pyenv shim may exist and still refuse to run
    for c in candidates:
        if c and subprocess.run([c, "-c", "import venv"], capture_output=True).returncode == 0:
            return Path(c)
    raise SystemExit(f"error: no Python {version} found (PATH or {pyenv_root}/versions)")


def make_venv(python: Path, path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    run([python, "-m", "venv", path])
    py = path / "bin" / "python"
    run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    return py


def repair(raw: Path, out: Path) -> Path:
    """auditwheel repair ``raw`` (into a folder of its own, then moved to ``out``); returns the repaired wheel."""
    repaired = raw.parent / "repaired"
    shutil.rmtree(repaired, ignore_errors=True)
    cmd = [sys.executable, "-m", "auditwheel", "repair", "-w", repaired]
    for pattern in EXCLUDE:
        cmd += ["--exclude", pattern]
    run(cmd + [raw])
    (wheel,) = repaired.glob("*.whl")
    return Path(shutil.move(wheel, out / wheel.name))


def build_wheel(py: Path, tag: str, dist: Path) -> Path:
    raw_dir = WORK / f"raw-{tag}"
    shutil.rmtree(raw_dir, ignore_errors=True)
    # This environment's wheel reuses `make install`'s build tree; a venv's gets its own (CMake's cache
    # remembers the interpreter).
    own_tree = [] if tag == "current" else ["-C", f"build-dir={WORK / ('build-' + tag)}/{{wheel_tag}}"]
    run([py, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", raw_dir, *own_tree, ROOT])
    (raw,) = raw_dir.glob("fusedlr-*.whl")
    return repair(raw, dist)


def smoke(py: Path, cwd: Path) -> str:
    """tools/wheel_smoke.py in ``py``'s environment, from a folder without the checkout; its summary line."""
    log(f"$ {py} tools/wheel_smoke.py")
    out = subprocess.run([str(py), str(ROOT / "tools" / "wheel_smoke.py")], cwd=cwd, capture_output=True, text=True)
    print(out.stdout + out.stderr, end="", flush=True)
    if out.returncode != 0:
        raise SystemExit(f"error: the smoke test failed in {py}")
    return out.stdout.strip().splitlines()[-1]


def tags(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
        return ", ".join(line.split(": ", 1)[1] for line in z.read(name).decode().splitlines() if line.startswith("Tag:"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pythons", default="", help="comma-separated versions, e.g. 3.10,3.11; default: build with "
                                                  "this Python and its installed packages, no venv")
    ap.add_argument("--torch", default=None, help="torch version to build against (default: this Python's, e.g. 2.14.1)")
    ap.add_argument("--dist", default=str(ROOT / "dist"))
    ap.add_argument("--smoke", action="store_true", help="install each wheel in a fresh venv and smoke-test it")
    ap.add_argument("--sdist", action="store_true", help="also the sdist, built from source in a venv and smoke-tested")
    ap.add_argument("--keep", action="store_true", help="keep the venvs under build/wheels")
    args = ap.parse_args()

    import torch

    torch_version = args.torch or torch.__version__.split("+")[0]
    dist = Path(args.dist)
    dist.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []

    if not args.pythons:  # make wheel: this environment as it is
        wheel = build_wheel(Path(sys.executable), "current", dist)
        log(f"{wheel.name} ({wheel.stat().st_size / 2**20:.2f} MiB, {tags(wheel)})")
        return 0

    versions = [v.strip() for v in args.pythons.split(",") if v.strip()]
    sdist_in = "3.11" if "3.11" in versions else versions[0]
    sdist = None
    if args.sdist:
        run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", dist, ROOT])
        sdist = max(dist.glob("fusedlr-*.tar.gz"), key=lambda p: p.stat().st_mtime)
        log(f"sdist {sdist.name} ({sdist.stat().st_size / 2**10:.0f} KiB)")
    for version in versions:
        python = find_python(version)
        tag = f"py{version}"
        t0 = time.time()
        py = make_venv(python, WORK / f"venv-build-{tag}")
        run([py, "-m", "pip", "install", "-q", f"torch=={torch_version}", *BUILD_TOOLS])
        wheel = build_wheel(py, tag, dist)
        row = {"python": version, "wheel": wheel.name, "MiB": wheel.stat().st_size / 2**20, "tags": tags(wheel),
               "build_s": time.time() - t0}
        if sdist is not None and version == sdist_in:
            t1 = time.time()
            run([py, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--force-reinstall", sdist])
            row["sdist"] = smoke(py, WORK)
            row["sdist_s"] = time.time() - t1
        if not args.keep:
            shutil.rmtree(WORK / f"venv-build-{tag}")
        if args.smoke:
            t1 = time.time()
            spy = make_venv(python, WORK / f"venv-smoke-{tag}")
            run([spy, "-m", "pip", "install", "-q", wheel])  # dependencies (the pinned torch) resolved by pip
            row["smoke"] = smoke(spy, WORK)
            row["smoke_s"] = time.time() - t1
            if not args.keep:
                shutil.rmtree(WORK / f"venv-smoke-{tag}")
        rows.append(row)
        log(f"done: {row}")

    print("\n| Python | wheel | size | build | smoke (fresh venv) | sdist from source |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['python']} | {r['wheel']} | {r['MiB']:.2f} MiB | {r['build_s']:.0f} s | "
              f"{r.get('smoke', '-')} | {r.get('sdist', '-')} |")
    for w in sorted(dist.glob("fusedlr-*.whl")):
        show = subprocess.run([sys.executable, "-m", "auditwheel", "show", w], capture_output=True, text=True)
        print(f"\n$ auditwheel show {w.name}\n{show.stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
