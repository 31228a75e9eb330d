"""`dosewatch demo`: the seed abstract's four patients, checked by dosewatch."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

SEED_BUNDLE = "data/seed/seed-patients.json"


def seed_bundle_path() -> Path:
    """The shipped synthetic FHIR Bundle of the four seed patients (see dosewatch.seed)."""
    return Path(str(resources.files("dosewatch").joinpath(SEED_BUNDLE)))


def run_demo(out: Path | None = None) -> None:
    from rich.console import Console

    from .check import check_path, print_table

    console = Console()
    bundle = seed_bundle_path()
    console.print(f"[bold]dosewatch demo[/bold]: the four patients of the seed abstract (synthetic FHIR: {bundle.name})")
    console.print("Lenalidomide 25 mg/day, days 1-21 of 28, with steroid prophylaxis (Andritsos, Blood 2007 #4727).\n")
    result = check_path(bundle, study_drug="lenalidomide")
    print_table(result)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "check.json").write_text(result.to_json() + "\n")
        console.print(f"events written to {out / 'check.json'}")
