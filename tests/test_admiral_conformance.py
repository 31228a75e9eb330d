"""dosewatch reproduces every ATOXGRL/ATOXGRH admiral wrote on the pharmaverseadam ADLB (CTCAE v4.03)."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from dosewatch.io.adlb import grade_file

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "conformance" / "admiral-adlb" / "adlb_graded.csv"
# the columns the conformance check feeds (README "How the check feeds it to dosewatch")
FED = ["ROWID", "USUBJID", "PARAMCD", "LBTESTCD", "AVAL", "AVALU", "ANRLO", "ANRHI", "BASE", "ADT", "ADY", "PARAM",
       "ATOXDSCL", "ATOXDSCH"]


def test_all_grades_agree_with_admiral(tmp_path):
    if not DATA.exists():
        pytest.skip(f"{DATA} not present")
    full = pl.read_csv(DATA, infer_schema=False)
    feed = full.select(FED).with_columns(  # derived LYMPH rows get LYM, as the check does
        pl.when(pl.col("LBTESTCD").is_null() & (pl.col("PARAMCD") == "LYMPH")).then(pl.lit("LYM"))
        .otherwise(pl.col("LBTESTCD")).alias("LBTESTCD"))
    src, out = tmp_path / "adlb.csv", tmp_path / "graded.csv"
    feed.write_csv(src)
    report = grade_file(src, out, criteria="ctcae-4.03", reading="auto", skip_invalid=False)
    assert report.rows == full.height and report.problems == []
    graded = pl.read_csv(out, infer_schema=False)
    assert graded["ROWID"].to_list() == full["ROWID"].to_list()
    ours = graded.select(pl.col("ATOXGRL").fill_null(""), pl.col("ATOXGRH").fill_null(""))
    theirs = full.select(pl.col("ATOXGRL").fill_null(""), pl.col("ATOXGRH").fill_null(""))
    agree = int((ours["ATOXGRL"] == theirs["ATOXGRL"]).sum() + (ours["ATOXGRH"] == theirs["ATOXGRH"]).sum())
    assert 2 * full.height == 65_324
    assert agree == 65_324, f"admiral conformance: {agree}/65324 grades agree (CTCAE v4.03)"
