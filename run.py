#!/usr/bin/env python3
"""Set up dosewatch in ./.venv and run the demo or the whole test suite.

    python3 run.py demo     # set up, then run the main job: the trial server with the demo trial
    python3 run.py test     # set up, then run every test

Needs only python3 (>= 3.11). Everything else is installed into ./.venv.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"


def sh(*args: str | Path) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT)


def setup() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"dosewatch needs Python >= 3.11, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        sh(sys.executable, "-m", "venv", VENV)
    # Reinstall whenever the package metadata changed since the last install.
    wanted = (ROOT / "pyproject.toml").read_text()
    if not STAMP.exists() or STAMP.read_text() != wanted:
        sh(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        sh(BIN / "python", "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]")
        STAMP.write_text(wanted)


def browser() -> None:
    """The browser tests drive Debian's chromium (never a downloaded browser): install it if missing."""
    if shutil.which("chromium") or Path("/usr/bin/chromium").exists():
        return
    apt = shutil.which("apt-get")
    if not apt:
        print("note: no chromium and no apt-get: the browser tests will be skipped", flush=True)
        return
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        print("note: chromium is missing and installing it needs root: the browser tests will be skipped", flush=True)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([*prefix, apt, "-qq", "update"], [*prefix, apt, "-y", "-qq", "install", "chromium"]):
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)


def main() -> None:
    task = sys.argv[1] if len(sys.argv) > 1 else "demo"
    rest = sys.argv[2:]
    setup()
    if task == "demo":
        sh(BIN / "dosewatch", "serve", "--demo", *rest)
    elif task == "test":
        browser()
        sh(BIN / "python", "-m", "pytest", *rest)
    elif task == "setup":
        pass
    else:
        sys.exit(f"unknown task {task!r}: use demo, test or setup")


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
