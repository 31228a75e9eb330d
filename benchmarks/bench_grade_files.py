"""`dosewatch grade` on whole ADLB files, end to end, with peak memory (run by hand; not in tests).

    .venv/bin/python benchmarks/bench_grade_files.py [--repeat 3] [--rows 1000000] [--src OTHER/src]

Files: the 32,662-row pharmaverse ADLB (../shared/conformance/admiral-adlb, admiral's grades dropped)
and the same rows repeated to ``--rows`` rows under new subject ids (written to benchmarks/data/,
git-ignored). Each is graded with CTCAE v4.03 (admiral's reading, as the file names its terms). With
Rscript and admiral installed (tools/r/), the same file is graded by admiral's
``derive_var_atoxgr_dir`` for the side-by-side ratio; without R, dosewatch alone is timed.
``--src`` also times another checkout's sources with this venv (before/after, interleaved).
Prints wall and CPU seconds (best of --repeat) and the peak resident memory of the process.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
ADLB = ROOT.parent / "shared" / "conformance" / "admiral-adlb" / "adlb_graded.csv"
DATA = ROOT / "benchmarks" / "data"
DOSEWATCH = str(Path(sys.executable).parent / "dosewatch")
ADMIRAL_R = """
suppressMessages({library(admiral); library(readr); library(dplyr)})
args <- commandArgs(TRUE)
adlb <- read_csv(args[1], show_col_types = FALSE, guess_max = 100000)
for (d in c("L", "H")) adlb <- derive_var_atoxgr_dir(adlb, new_var = !!sym(paste0("ATOXGR", d)),
  tox_description_var = !!sym(paste0("ATOXDSC", d)), meta_criteria = atoxgr_criteria_ctcv4,
  criteria_direction = d, get_unit_expr = extract_unit(PARAM))
write_csv(adlb, args[2])
"""


def inputs(rows: int) -> list[Path]:
    DATA.mkdir(exist_ok=True)
    small = DATA / "adlb_pharmaverse.csv"
    if not small.exists():
        pl.read_csv(ADLB, infer_schema=False).drop("ATOXGRL", "ATOXGRH", "ATOXGR").write_csv(small)
    big = DATA / f"adlb_pharmaverse_{rows}.csv"
    if not big.exists():
        one = pl.read_csv(small, infer_schema=False)
        copies = -(-rows // one.height)
        frames = [one.with_columns((pl.col("USUBJID") + f"-{c}").alias("USUBJID")) for c in range(copies)]
        pl.concat(frames).head(rows).write_csv(big)
    return [small, big]


def run(args: list[str], env: dict) -> tuple[float, float, float]:
    """(wall s, cpu s, peak RSS MiB) of one child process."""
    wrapper = ("import resource, subprocess, sys\n"
               "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
               "print(r.ru_utime + r.ru_stime, r.ru_maxrss / 1024, done.returncode)\n"
               "sys.stderr.write(done.stderr[-2000:] if done.returncode else '')\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    cpu, rss, rc = done.stdout.split()
    if rc != "0":
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr}")
    return wall, float(cpu), float(rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--src", type=Path, help="another checkout's src/ to compare with (same venv)")
    args = ap.parse_args()
    rscript = shutil.which("Rscript")
    if rscript is None:
        print("Rscript not found: admiral not timed (install R and admiral as in tools/r/)")
    trees = [("this", None)] + ([("other", args.src.resolve())] if args.src else [])
    for src in inputs(args.rows):
        rows = sum(1 for _ in src.open("rb")) - 1
        out = DATA / f"{src.stem}_graded.csv"
        print(f"{src.name}: {rows:,} rows, {src.stat().st_size / 2**20:.0f} MiB")
        for _ in range(args.repeat):
            for tree, other in trees:
                env = {**os.environ, **({"PYTHONPATH": str(other)} if other else {})}
                wall, cpu, rss = run([DOSEWATCH, "grade", str(src), "-o", str(out), "--criteria", "ctcae-4.03"], env)
                print(f"  dosewatch grade [{tree}]  wall {wall:6.2f} s  cpu {cpu:6.2f} s  peak {rss:6.0f} MiB "
                      f"({rss * 2**20 / src.stat().st_size:.1f}x the file)  (load {os.getloadavg()[0]:.1f})", flush=True)
            if rscript:
                script = DATA / "admiral_grade.R"
                script.write_text(ADMIRAL_R)
                wall, cpu, rss = run([rscript, str(script), str(src), str(DATA / "admiral_out.csv")], dict(os.environ))
                print(f"  R admiral               wall {wall:6.2f} s  cpu {cpu:6.2f} s  peak {rss:6.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
