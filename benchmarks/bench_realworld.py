"""Real data, as a new user meets it: whole commands on the CDISC pilot study (SDTM) and on a merge of
many Synthea FHIR exports, and the FHIR reader's rate in resources per second.

    .venv/bin/python benchmarks/bench_realworld.py [--repeat 3] [--synthea DIR] [--copies 60]

The Synthea merge is every bundle of ``--synthea DIR`` (for example the R4/SYNTHEA folder of
smart-on-fhir/generated-sample-data) in one transaction Bundle; without ``--synthea`` it is the two
shared exports (../shared/realworld/fhir-synthea) repeated ``--copies`` times under new ids. Prints the
load average beside every figure: on a machine shared with other jobs, compare CPU (user + sys) times.
Targets (issue 13): check on the pilot under 3 s, validate under 2 s, FHIR reading at least 50,000
resources per second.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REALWORLD = ROOT.parent / "shared" / "realworld"
PILOT = REALWORLD / "sdtm-cdiscpilot01"
DOSEWATCH = str(Path(sys.executable).parent / "dosewatch")


def load() -> str:
    return "load %.1f" % os.getloadavg()[0]


def merged_synthea(folder: Path | None, copies: int, out: Path) -> int:
    """One transaction Bundle of many Synthea exports; returns the number of entries."""
    entries: list = []
    if folder is not None:
        for path in sorted(folder.glob("*.json")):
            if path.stat().st_size:
                entries += json.loads(path.read_text())["entry"]
    else:
        text = [p.read_text() for p in sorted((REALWORLD / "fhir-synthea").glob("*.json"))]
        for copy in range(copies):
            for t in text:  # new ids (uuids are 36 characters: the copy number replaces the first 4)
                bundle = json.loads(t.replace('"urn:uuid:', f'"urn:uuid:{copy:04x}'))
                for e in bundle["entry"]:
                    r = e["resource"]
                    r["id"] = f"{copy:04x}{r['id'][4:]}"
                entries += bundle["entry"]
    out.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
    return len(entries)


def command(args: list[str], repeat: int) -> list[tuple[float, float]]:
    """(wall, user+sys CPU) seconds of a whole command, ``repeat`` times."""
    out = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
        out.append((wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime))
    return out


def show(name: str, runs: list[tuple[float, float]]) -> None:
    best = min(runs, key=lambda r: r[1])
    print(f"{name:<42} wall {min(w for w, _ in runs):6.2f} s   cpu {best[1]:6.2f} s   ({load()})", flush=True)


def fhir_rate(path: Path, n: int, repeat: int) -> None:
    code = ("import sys, time\nfrom dosewatch.io.fhir import read_fhir\n"
            f"read_fhir({str(path)!r}, collect=True)\n"  # warm: imports and validators built once
            "w, c = time.perf_counter(), time.process_time()\n"
            f"r = read_fhir({str(path)!r}, collect=True)\n"
            "print(time.perf_counter() - w, time.process_time() - c, r.cohort.observations.height)\n")
    for _ in range(repeat):
        wall, cpu, obs = (float(x) for x in subprocess.run([sys.executable, "-c", code], capture_output=True,
                                                             text=True, check=True).stdout.split())
        print(f"{'FHIR reader (in process)':<42} {n:,} resources ({int(obs):,} observations read): "
              f"{n / wall:,.0f}/s wall, {n / cpu:,.0f}/s cpu   ({load()})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--synthea", type=Path, help="a folder of Synthea FHIR bundles to merge")
    parser.add_argument("--copies", type=int, default=60, help="copies of the shared exports (without --synthea)")
    args = parser.parse_args()
    if not PILOT.is_dir():
        raise SystemExit(f"{PILOT} is missing: ../shared/realworld must be beside the project")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "synthea.json"
        n = merged_synthea(args.synthea, args.copies, bundle)
        print(f"Synthea merge: {n:,} resources, {bundle.stat().st_size / 1e6:.0f} MB")
        show("dosewatch --help", command([DOSEWATCH, "--help"], args.repeat))
        show("dosewatch check PILOT --format json", command(
            [DOSEWATCH, "check", str(PILOT), "--study-drug", "xanomeline", "--format", "json"], args.repeat))
        show("dosewatch validate PILOT", command([DOSEWATCH, "validate", str(PILOT)], args.repeat))
        show("dosewatch validate PILOT --format json", command(
            [DOSEWATCH, "validate", str(PILOT), "--format", "json"], args.repeat))
        show("dosewatch check SYNTHEA-MERGE --format json", command(
            [DOSEWATCH, "check", str(bundle), "--format", "json"], args.repeat))
        show("dosewatch validate SYNTHEA-MERGE", command([DOSEWATCH, "validate", str(bundle)], args.repeat))
        fhir_rate(bundle, n, args.repeat)


if __name__ == "__main__":
    main()
