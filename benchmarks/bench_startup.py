"""Fixed costs of whole commands, as a user meets them (run by hand; never part of the tests).

    .venv/bin/python benchmarks/bench_startup.py [--repeat 5] [--src OTHER_CHECKOUT/src]

- start-up: ``dosewatch --help``, ``dosewatch grade`` on a 3-row file, ``dosewatch validate`` on a 3-row
  SDTM folder (what every command pays before its data);
- first run after installation: ``dosewatch check`` on the CDISC pilot and ``dosewatch grade`` on the
  32,662-row pharmaverse ADLB with a fresh, empty NUMBA_CACHE_DIR, then again with the same one;
- ``--src`` runs the same commands on another checkout's sources (PYTHONPATH) with this venv, to
  compare before and after in one run, interleaved.

Prints wall and CPU (user + sys) seconds, best of ``--repeat``, with the load average: on a machine
shared with other jobs, compare CPU times.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PILOT = SHARED / "realworld" / "sdtm-cdiscpilot01"
ADLB = SHARED / "conformance" / "admiral-adlb" / "adlb_graded.csv"
DOSEWATCH = str(Path(sys.executable).parent / "dosewatch")


def run(args: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def show(name: str, runs: list[tuple[float, float]]) -> None:
    print(f"{name:<58} wall {min(w for w, _ in runs):6.2f} s   cpu {min(c for _, c in runs):6.2f} s   "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--src", type=Path, help="another checkout's src/ to compare with (same venv)")
    args = ap.parse_args()
    trees = [("this", None)] + ([("other", args.src.resolve())] if args.src else [])
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny.csv"
        tiny.write_text("USUBJID,PARAMCD,AVAL,AVALU,ANRLO,ANRHI,ADY\n1,K,4.1,mmol/L,3.5,5.1,1\n"
                        "1,K,6.6,mmol/L,3.5,5.1,2\n2,HGB,80,g/L,120,160,1\n")
        sdtm = Path(tmp) / "sdtm"
        sdtm.mkdir()
        (sdtm / "LB.csv").write_text("STUDYID,USUBJID,LBTESTCD,LBORRES,LBORRESU,LBSTRESN,LBSTRESU,LBDTC\n"
                                     "S,1,K,4.1,mmol/L,4.1,mmol/L,2024-01-02\n")
        fixed = {"dosewatch --help": [DOSEWATCH, "--help"],
                 "dosewatch grade TINY (3 rows)": [DOSEWATCH, "grade", str(tiny), "-o", str(Path(tmp) / "t.csv")],
                 "dosewatch validate SDTM (1 row)": [DOSEWATCH, "validate", str(sdtm)]}
        first = {"dosewatch check PILOT --format json": [DOSEWATCH, "check", str(PILOT), "--study-drug", "xanomeline",
                                                         "--format", "json"],
                 "dosewatch grade ADLB (32,662 rows)": [DOSEWATCH, "grade", str(ADLB), "-o", str(Path(tmp) / "a.csv"),
                                                       "--criteria", "ctcae-4.03"]}
        for name, cmd in fixed.items():
            for tree, src in trees:
                env = {**os.environ, **({"PYTHONPATH": str(src)} if src else {})}
                show(f"{name} [{tree}]", [run(cmd, env) for _ in range(args.repeat)])
        for name, cmd in first.items():
            for tree, src in trees:
                cache = Path(tempfile.mkdtemp(dir=tmp))  # an empty numba cache: a new installation
                env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), **({"PYTHONPATH": str(src)} if src else {})}
                show(f"{name} [{tree}] first run", [run(cmd, env)])
                show(f"{name} [{tree}] second run", [run(cmd, env) for _ in range(max(1, args.repeat - 2))])


if __name__ == "__main__":
    main()
