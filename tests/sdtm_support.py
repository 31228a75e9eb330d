"""The hand-written SDTM study (tests/data/sdtm/study), copied into a test's folder and changed row by row."""
from __future__ import annotations

import shutil
from pathlib import Path

FIXTURE = Path(__file__).parent / "data" / "sdtm" / "study"


def study(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    shutil.copytree(FIXTURE, folder)
    return folder


def append(folder: Path, domain: str, *lines: str) -> Path:
    path = folder / f"{domain}.csv"
    path.write_text(path.read_text() + "".join(line + "\n" for line in lines))
    return folder


def replace(folder: Path, domain: str, old: str, new: str) -> Path:
    path = folder / f"{domain}.csv"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return folder


def set_header(folder: Path, domain: str, extra: str, fill: str = "") -> Path:
    """Add columns to a dataset: ``extra`` to the header, ``fill`` to every existing row."""
    path = folder / f"{domain}.csv"
    head, *rows = path.read_text().splitlines()
    path.write_text("\n".join([head + extra] + [r + fill for r in rows]) + "\n")
    return folder
