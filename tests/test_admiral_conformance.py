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


V6 = Path(__file__).resolve().parent / "fixtures" / "admiral-ctcae-6.0" / "adlb_graded.csv.gz"


def test_all_ctcae6_grades_agree_with_admiral(tmp_path):
    """admiral's derive_var_atoxgr_dir with atoxgr_criteria_ctcv6 (SI rows) and _ctcv6_uscv (US rows) on
    the pharmaverseadam ADLB (tools/r/make_admiral_v6_fixture.R): every ATOXGRL/ATOXGRH reproduced."""
    full = pl.read_csv(V6, infer_schema=False)
    src, out = tmp_path / "adlb.csv", tmp_path / "graded.csv"
    full.drop("ATOXGRL", "ATOXGRH").write_csv(src)
    report = grade_file(src, out, criteria="ctcae-6.0", reading="auto", skip_invalid=False)
    assert report.rows == full.height == 61_708 and report.problems == []
    graded = pl.read_csv(out, infer_schema=False)
    assert graded["ROWID"].to_list() == full["ROWID"].to_list()
    agree = 0
    for col in ("ATOXGRL", "ATOXGRH"):
        ours, theirs = graded[col].fill_null(""), full[col].fill_null("")
        agree += int((ours == theirs).sum())
        # both unit systems and every grade admiral gave take part
        assert set(theirs.unique()) >= {"", "0", "1", "2", "3"}
    assert set(full["UNITS"].unique()) == {"SI", "US"}
    assert agree == 123_416, f"admiral conformance: {agree}/123416 grades agree (CTCAE v6.0)"
