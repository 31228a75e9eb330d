"""`dosewatch grade`: through Typer's CliRunner and as the installed command, on CSVs in tmp_path."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from dosewatch.cli import app

HEADER = "USUBJID,PARAMCD,LBTESTCD,AVAL,AVALU,ANRLO,ANRHI,BASE,ADY\n"
ROWS = [
    "S1,POTAS,K,6.5,mmol/L,3.5,5.1,4.0,3",
    "S1,POTAS,,3.2,mmol/L,3.5,5.1,4.0,5",        # empty LBTESTCD: PARAMCD POTAS means K
    "S1,NEUT,NEUT,0.8,10^9/L,2.0,7.5,3.0,3",
    "S1,CREAT,CREAT,1.06,mg/dL,0.6,1.3,0.7,3",
    "S1,ALT,ALT,,U/L,5,40,,3",                     # no value
    "S1,UNKNOWN,,12,xyz,,,,3",                     # a parameter dosewatch does not grade
]
EXE = Path(sys.executable).with_name("dosewatch")


def write(tmp_path: Path, rows=ROWS, header=HEADER, name="adlb.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + "\n".join(rows) + "\n")
    return path


def run(args):
    return CliRunner().invoke(app, args)


def test_grade_adds_atoxgr_columns(tmp_path):
    src, out = write(tmp_path), tmp_path / "out.csv"
    result = run(["grade", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    graded = pl.read_csv(out, infer_schema=False)
    assert graded.columns[:9] == HEADER.strip().split(",")  # every input column kept, in order
    assert graded["ATOXGRL"].to_list() == ["0", "1", "3", None, None, None]
    assert graded["ATOXGRH"].to_list() == ["3", "0", None, "2", None, None]
    assert graded["ATOXDSCH"].to_list()[:2] == ["Hyperkalemia", "Hyperkalemia"]
    assert graded["ATOXRSNH"].to_list()[4:] == ["missing value", "no term"]
    assert graded["AVAL"].to_list() == pl.read_csv(src, infer_schema=False)["AVAL"].to_list()


def test_adams_analysis_range_stands_in_for_the_normal_range(tmp_path):
    """A1LO / A1HI are read where ANRLO / ANRHI are absent or empty: the same grades."""
    src, out = write(tmp_path), tmp_path / "out.csv"
    assert run(["grade", str(src), "-o", str(out)]).exit_code == 0
    expected = pl.read_csv(out, infer_schema=False).select("ATOXGRL", "ATOXGRH")
    renamed = write(tmp_path, header=HEADER.replace("ANRLO,ANRHI", "A1LO,A1HI"), name="a1.csv")
    assert run(["grade", str(renamed), "-o", str(out)]).exit_code == 0
    assert pl.read_csv(out, infer_schema=False).select("ATOXGRL", "ATOXGRH").equals(expected)
    both = write(tmp_path, [r.replace(",3.5,5.1,4.0,", ",,,4.0,") + ",3.5,5.1" for r in ROWS],
                 HEADER.strip() + ",A1LO,A1HI\n", name="both.csv")  # ANRLO/ANRHI empty for potassium
    assert run(["grade", str(both), "-o", str(out)]).exit_code == 0
    graded = pl.read_csv(out, infer_schema=False)
    assert graded["ATOXGRH"][0] == "3" and graded["ATOXGRL"][1] == "1"  # K 6.5 and 3.2 against A1LO/A1HI


def test_criteria_and_reading_options(tmp_path):
    src, out = write(tmp_path), tmp_path / "out.csv"
    assert run(["grade", str(src), "-o", str(out), "--reading", "admiral"]).exit_code == 0
    graded = pl.read_csv(out, infer_schema=False)
    assert graded["ATOXGRL"][1] == "2"  # admiral's hypokalemia: <LLN is grade 2
    assert graded["ATOXGRH"][3] == "2"  # creatinine: multiples of ULN and baseline, no unit check
    assert run(["grade", str(src), "-o", str(out), "--criteria", "iwcll-2018"]).exit_code == 0
    graded = pl.read_csv(out, infer_schema=False)
    assert graded["ATOXGRL"][2] == "3"  # iwCLL ANC 0.5-1.0 is grade 3
    assert graded["ATOXGRH"].null_count() == graded.height


def test_auto_reading_follows_atoxdscl(tmp_path):
    header = HEADER.strip() + ",ATOXDSCL,ATOXDSCH\n"
    rows = ["S1,LYMPH,LYM,0.3,10^9/L,1.0,4.0,,1,CD4 lymphocytes decreased,",
            "S1,POTAS,K,3.2,mmol/L,3.5,5.1,,1,Hypokalemia,Hyperkalemia"]
    src, out = write(tmp_path, rows, header), tmp_path / "out.csv"
    assert run(["grade", str(src), "-o", str(out), "--criteria", "ctcae-4.03"]).exit_code == 0
    graded = pl.read_csv(out, infer_schema=False)
    assert graded["ATOXGRL"].to_list() == ["2", "2"]  # CD4 term as given; admiral's hypokalemia
    assert graded["ATOXGRH"].to_list() == [None, "0"]


def test_unit_from_param_when_avalu_is_missing(tmp_path):
    header = "USUBJID,PARAMCD,PARAM,AVAL,ANRLO,ANRHI,ADT\n"
    src = write(tmp_path, ["S1,SODIUM,Sodium (mmol/L),161,135,145,2024-01-02"], header)
    out = tmp_path / "out.csv"
    assert run(["grade", str(src), "-o", str(out)]).exit_code == 0
    assert pl.read_csv(out, infer_schema=False)["ATOXGRH"].to_list() == ["4"]


def test_missing_column_names_file_and_column(tmp_path):
    src = write(tmp_path, ["S1,POTAS,K,6.5,mmol/L,3.5,,4.0,3"], HEADER.replace(",ANRHI", ",XX"))
    result = run(["grade", str(src), "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 2
    assert "adlb.csv: ANRHI or A1HI: required column missing" in result.output


def test_bad_rows_fail_the_whole_file(tmp_path):
    rows = ["S1,POTAS,K,abc,mmol/L,3.5,5.1,,1", "S1,POTAS,K,4.0,furlongs,3.5,5.1,,1",
            "S1,POTAS,K,40,mmol/L,3.5,5.1,,1", "S1,POTAS,K,4.0,mmol/L,3.5,5.1,,1"]
    src, out = write(tmp_path, rows), tmp_path / "out.csv"
    result = run(["grade", str(src), "-o", str(out)])
    assert result.exit_code == 2
    assert "adlb.csv data row 1: AVAL: not a number ('abc')" in result.output
    assert "adlb.csv data row 2: AVALU: unknown unit 'furlongs' for K" in result.output
    assert "adlb.csv data row 3: AVAL: implausible K 40 mmol/L" in result.output
    assert not out.exists()


def test_skip_invalid_grades_the_rest(tmp_path):
    rows = ["S1,POTAS,K,abc,mmol/L,3.5,5.1,,1", "S1,POTAS,K,6.5,mmol/L,3.5,5.1,,1"]
    src, out = write(tmp_path, rows), tmp_path / "out.csv"
    result = run(["grade", str(src), "-o", str(out), "--skip-invalid"])
    assert result.exit_code == 0
    assert "skipped: adlb.csv data row 1: AVAL: not a number" in result.output
    graded = pl.read_csv(out, infer_schema=False)
    assert graded["ATOXGRH"].to_list() == [None, "3"]
    assert graded["ATOXRSNH"][0] == "invalid input: AVAL: not a number: 'abc'"


def test_installed_command(tmp_path):
    src, out = write(tmp_path), tmp_path / "out.csv"
    done = subprocess.run([str(EXE), "grade", str(src), "-o", str(out), "--criteria", "ctcae-5.0"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "graded 6 rows with ctcae-5.0" in done.stderr
    assert pl.read_csv(out, infer_schema=False)["ATOXGRH"][0] == "3"
    bad = write(tmp_path, ["S1,POTAS,K,abc,mmol/L,3.5,5.1,,1"], name="bad.csv")
    done = subprocess.run([str(EXE), "grade", str(bad), "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 2 and "bad.csv data row 1: AVAL: not a number" in done.stderr
