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


# The output is written as the input lines, byte for byte, plus the added fields; files whose lines
# are not their rows one to one are rewritten as a whole frame instead. Both give the same table.
QUOTED_ROWS = ['"S1",POTAS,K,"1,5",mmol/L,3.5,5.1,,1',      # quoted fields, a comma inside a value
               'S1,POTAS,K,"4""2",mmol/L,3.5,5.1,,2',        # a quote inside a value
               'S1,POTAS,K,6.5,mmol/L,3.50,5.1,4.00,3']      # numbers as written: 3.50 stays 3.50


def test_output_lines_are_the_input_lines_then_the_grades(tmp_path):
    src, out = write(tmp_path, QUOTED_ROWS), tmp_path / "out.csv"
    result = run(["grade", str(src), "-o", str(out), "--skip-invalid"])
    assert result.exit_code == 0, result.output
    lines_in, lines_out = src.read_text().splitlines(), out.read_text().splitlines()
    assert len(lines_out) == len(lines_in)
    for a, b in zip(lines_in, lines_out):
        assert b.startswith(a + ",")
    graded = pl.read_csv(out, infer_schema=False)
    # reasons with a comma and a quote are quoted as CSV wants them and read back whole
    assert graded["ATOXRSNH"].to_list()[:2] == ["invalid input: AVAL: not a number: '1,5'",
                                                "invalid input: AVAL: not a number: '4\"2'"]
    assert graded["ATOXGRH"].to_list() == [None, None, "3"]
    assert graded["ANRLO"][2] == "3.50" and graded["USUBJID"][0] == "S1"
    # no line break after the last line: the same lines
    src.write_text(src.read_text().rstrip("\n"))
    assert run(["grade", str(src), "-o", str(out), "--skip-invalid"]).exit_code == 0
    assert out.read_text().splitlines() == lines_out


def _same_table(a: Path, b: Path) -> None:
    assert pl.read_csv(a, infer_schema=False).equals(pl.read_csv(b, infer_schema=False))


def test_files_whose_lines_are_not_rows_are_rewritten_whole(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text(HEADER + "\n".join(ROWS) + "\n")
    expected = tmp_path / "expected.csv"
    assert run(["grade", str(plain), "-o", str(expected)]).exit_code == 0
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes((HEADER + "\n".join(ROWS) + "\n").replace("\n", "\r\n").encode())
    out = tmp_path / "crlf_out.csv"
    assert run(["grade", str(crlf), "-o", str(out)]).exit_code == 0
    _same_table(out, expected)
    assert "\r" not in out.read_text()
    # a blank line: polars reads it as a row of empty fields, kept (ungraded) as before
    blank = tmp_path / "blank.csv"
    blank.write_text(HEADER + "\n".join(ROWS[:2]) + "\n\n" + "\n".join(ROWS[2:]) + "\n")
    out = tmp_path / "blank_out.csv"
    assert run(["grade", str(blank), "-o", str(out)]).exit_code == 0
    graded = pl.read_csv(out, infer_schema=False)
    assert graded.height == len(ROWS) + 1 and graded.row(2) == (None,) * 13 + ("no term", "no term")
    assert graded.remove(pl.int_range(pl.len()) == 2).equals(pl.read_csv(expected, infer_schema=False))
    # a quoted line break inside a field: one row over two lines
    broken = tmp_path / "broken.csv"
    broken.write_text("NOTE," + HEADER + '"two\nlines",' + ROWS[0] + "\n")
    out = tmp_path / "broken_out.csv"
    assert run(["grade", str(broken), "-o", str(out)]).exit_code == 0
    graded = pl.read_csv(out, infer_schema=False)
    assert graded["NOTE"].to_list() == ["two\nlines"] and graded["ATOXGRH"].to_list() == ["3"]


def test_grades_already_in_the_file_are_replaced_in_place(tmp_path):
    src = write(tmp_path, ROWS[:1], header=HEADER.strip() + ",ATOXGRH,ATOXGRL\n")
    src.write_text(src.read_text().replace(",1\n", ",1,9,9\n"))  # stale grades, 9 and 9
    out = tmp_path / "out.csv"
    assert run(["grade", str(src), "-o", str(out)]).exit_code == 0
    graded = pl.read_csv(out, infer_schema=False)
    assert graded.columns[:11] == HEADER.strip().split(",") + ["ATOXGRH", "ATOXGRL"]
    assert graded["ATOXGRH"].to_list() == ["3"] and graded["ATOXGRL"].to_list() == ["0"]
