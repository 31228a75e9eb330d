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
        # numba's kernels compiled now, not on a user's first large file (dosewatch/compiled.py)
        sh(BIN / "python", "-m", "dosewatch.compiled")
        STAMP.write_text(wanted)


def _missing_pango() -> list[str]:
    """Debian packages WeasyPrint (the safety review packet's PDF) needs at run time, if missing."""
    from ctypes.util import find_library

    missing = [pkg for pkg, lib in (("libpango-1.0-0", "pango-1.0"), ("libpangoft2-1.0-0", "pangoft2-1.0"))
               if not find_library(lib)]
    if not Path("/usr/share/fonts/truetype/dejavu").exists():
        missing.append("fonts-dejavu-core")
    return missing


def debian(packages: list[str], why: str) -> None:
    """Install Debian packages with apt-get (root, or sudo without a password); say so when it cannot."""
    if not packages:
        return
    apt = shutil.which("apt-get")
    prefix = [] if os.name != "nt" and os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if not apt or prefix is None:
        print(f"note: {', '.join(packages)} missing and cannot be installed here (no apt-get or no root): {why}",
              flush=True)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([*prefix, apt, "-qq", "update"], [*prefix, apt, "-y", "-qq", "install", *packages]):
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)


def browser() -> None:
    """The browser tests drive Debian's chromium (never a downloaded browser): install it if missing."""
    if shutil.which("chromium") or Path("/usr/bin/chromium").exists():
        return
    debian(["chromium"], "the browser tests will be skipped")


def main() -> None:
    task = sys.argv[1] if len(sys.argv) > 1 else "demo"
    rest = sys.argv[2:]
    setup()
    if task in ("demo", "test"):
        debian(_missing_pango(), "the safety review packet's PDF cannot be made")
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
