#!/usr/bin/env python3
"""Project tasks that need only python3: `python3 dev.py demo` and `python3 dev.py test`.

Each creates (or reuses) the virtual environment .venv, installs graphc with its test extras into
it, and runs the task there.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("GRAPHC_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def ensure_env() -> None:
    stamp = VENV / ".graphc-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and PY.exists():
        return
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    print("installing graphc[test] (editable)", flush=True)
    subprocess.check_call([str(PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]"])
    stamp.write_text(want)


def main(argv: list[str]) -> int:
    task = argv[0] if argv else "help"
    if task not in ("demo", "test", "env"):
        print(__doc__)
        return 2
    ensure_env()
    if task == "env":
        return 0
    if task == "demo":
        return subprocess.call([str(BIN / "graphc"), "demo", *argv[1:]], cwd=ROOT)
    # the layer order declared in pyproject.toml ([tool.importlinter]): an upward import fails here
    print("lint-imports (layers contract)", flush=True)
    rc = subprocess.call([str(BIN / "lint-imports"), "--no-cache"], cwd=ROOT)
    if rc != 0:
        return rc
    workers = os.environ.get("GRAPHC_TEST_WORKERS", "2")
    return subprocess.call([str(PY), "-m", "pytest", "-q", "-n", workers, "--durations=15", *argv[1:]],
                           cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
