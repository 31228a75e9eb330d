"""Fuzzing the readers: no input, however mangled, gives anything but problems named by file,
resource or row (never an uncaught exception, a traceback or a 500).

Two sources of inputs: a mutation corpus (the shipped FHIR bundles, a Synthea export and the SDTM
study folder, each mutated in a few places by hypothesis: values replaced by nulls, wrong JSON
types, huge or non-finite numbers, deep arrays, year-0 dates, NUL characters; CSV cells, headers
and whole files damaged), and the cases found by probing as an attacker would (issue 15). Bounded
to well under two minutes: examples are few and small, the corpus is cut to a few dozen entries.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dosewatch.errors import InputError
from dosewatch.io.json_bounds import MAX_DEPTH, json_excess
from dosewatch.io.reading import read_any
from test_server_support import json_paths

ROOT = Path(__file__).parent
SYNTHEA = ROOT.parent.parent / "shared" / "realworld" / "fhir-synthea"
STUDY = ROOT / "data" / "sdtm" / "study"


def _corpus() -> list[dict]:
    bundles = [json.loads(p.read_text()) for p in sorted((ROOT / "data" / "fhir").glob("*.json"))
               if p.name != "malformed.json"]
    for path in sorted(SYNTHEA.glob("*.json"))[:1]:  # a real export's shapes, cut to its first entries
        export = json.loads(path.read_text())
        export["entry"] = export["entry"][:40]
        bundles.append(export)
    return bundles


CORPUS = _corpus()
BIG = "9" * 5000
# What a careless or hostile client puts where a value belongs (as JSON text, spliced in raw).
REPLACEMENTS = ["null", "{}", "[]", '""', '"x"', "0", "-1", "1.5", "true", "1e400", "-1e400", BIG,
                "[null]", '{"a": null}', '"0000-01-01"', '"2024-02-30"', '"a\\u0000b"', '"\\ud800"',
                '{"resourceType": "Foo"}', '{"resourceType": {"a": 1}}', '[{"resourceType": "Foo", "id": "x"}]',
                "[" * 150 + "]" * 150, '{"coding": null}', '{"value": 1e400}']




def _mutate(bundle: dict, choices: list[tuple[int, int]]) -> str:
    """The bundle with values replaced: each choice picks a place (among all) and a replacement,
    written as a marker then spliced in as raw JSON text (so that 1e400 stays a number)."""
    doc = copy.deepcopy(bundle)
    marks = {}
    for n, (where, what) in enumerate(choices):
        paths = [p for p in json_paths(doc) if p]
        path = paths[where % len(paths)]
        target = doc
        try:
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = f"@@{n}@@"
        except (KeyError, IndexError, TypeError):
            continue
        marks[f'"@@{n}@@"'] = REPLACEMENTS[what % len(REPLACEMENTS)]
    text = json.dumps(doc)
    for mark, raw in marks.items():
        text = text.replace(mark, raw)
    return text


def _read_never_crashes(path: Path) -> None:
    try:
        read_any(path, collect=True)
    except InputError:
        pass  # a refusal with its problems (the file is not readable at all): fine


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(source=st.integers(0, 100), choices=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 100)),
                                                      min_size=1, max_size=4))
def test_mutated_bundles_give_problems_never_exceptions(tmp_path, source, choices):
    path = tmp_path / "mutated.json"
    path.write_text(_mutate(CORPUS[source % len(CORPUS)], choices))
    _read_never_crashes(path)


CELLS = ["", "0000-01-01", "0000", "2024-02-30", "1582-12-31", "2024-01-01T25:61", "a\x00b", "1e400", BIG, "nan",
         "inf", "-", "NA", "x" * 5000, "M", "2024", "2024-13", "\ufeff", "\r", '"']


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(sorted(p.name for p in STUDY.glob("*.csv"))),
                                st.integers(0, 6), st.integers(0, 10**6), st.integers(0, 100)),
                      min_size=1, max_size=4))
def test_mutated_sdtm_folders_give_problems_never_exceptions(tmp_path, edits):
    folder = tmp_path / "study"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(STUDY, folder)
    for name, op, where, what in edits:
        file = folder / name
        rows = list(csv.reader(io.StringIO(file.read_text(errors="replace"))))
        if op == 0:
            file.write_text("")  # an empty dataset
        elif op == 1 and rows:
            rows.insert(1, rows[0])  # the header twice
        elif op == 2 and rows and rows[0]:
            rows[0][where % len(rows[0])] = rows[0][0]  # a duplicate column name
        elif op == 3:
            file.write_bytes(file.read_bytes()[: where % (file.stat().st_size + 1)])  # cut short
            continue
        elif op == 4:
            file.write_bytes(b"\xff\xfe\x00garbage")
            continue
        elif len(rows) > 1:
            r = 1 + where % (len(rows) - 1)
            rows[r][where % len(rows[r])] = CELLS[what % len(CELLS)]
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        file.write_text(out.getvalue())
    _read_never_crashes(folder)
    assert _unnamed_rows(folder) == []


_ROW = re.compile(r"^(\S+) (?:data )?row (\d+)")


def _unnamed_rows(folder: Path) -> list[tuple[str, int]]:
    """The rows a read with skip_invalid neither read (a record's source) nor named (a problem's
    source), unless their whole file is named or the read was refused."""
    try:
        result = read_any(folder, skip_invalid=True)
    except InputError:
        return []  # refused as a whole: nothing left out
    named, whole = set(), set()
    sources = [s for t in ("patients", "observations", "doses", "events")
               for s in getattr(result.cohort, t)["source"].drop_nulls().to_list()]
    for source in sources + [p.source for p in result.problems]:
        m = _ROW.match(source)
        if m:
            named.add((m.group(1), int(m.group(2))))
        elif " " not in source:
            whole.add(source)
    unnamed = []
    for file in sorted(folder.glob("*.csv")):
        if file.name in whole:
            continue
        rows = list(csv.reader(io.StringIO(file.read_text(errors="replace"), newline="")))
        unnamed += [(file.name, n) for n, row in enumerate(rows[1:], 1)
                    if any(c.strip() for c in row) and (file.name, n) not in named]
    return unnamed


@pytest.mark.parametrize("damage", ["empty", "header only", "duplicate column", "not UTF-8", "no USUBJID"])
def test_skip_invalid_never_drops_a_row_unnamed_when_dm_is_damaged(tmp_path, damage):
    """With DM unreadable, every LB, VS and EX row is named as left out, or the read is refused."""
    folder = tmp_path / "study"
    shutil.copytree(STUDY, folder)
    dm = folder / "dm.csv"
    text = dm.read_text()
    dm.write_bytes({"empty": b"", "header only": text.splitlines()[0].encode(),
                    "duplicate column": text.replace("SUBJID,SEX", "USUBJID,SEX", 1).encode(),
                    "not UTF-8": b"\xff\xfe\x00garbage",
                    "no USUBJID": text.replace("USUBJID", "XUBJID").encode()}[damage])
    assert _unnamed_rows(folder) == []
    if damage in ("empty", "duplicate column", "not UTF-8"):  # DM unread as a whole: the read is refused
        with pytest.raises(InputError, match="no readable DM dataset"):
            read_any(folder, skip_invalid=True)


# -- the cases found by probing (issue 15), each named

def _bundle(*resources) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


OBS = {"resourceType": "Observation", "id": "k1", "status": "final",
       "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]}, "subject": {"reference": "Patient/p1"},
       "effectiveDateTime": "2024-01-03T08:30:00+01:00", "valueQuantity": {"value": 5.8, "unit": "mEq/L"}}
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-01-01"}
VALUE = '"@@"'


def _with(**changes) -> str:
    return json.dumps(_bundle(PATIENT, {**OBS, **changes}))


PROBED = {
    "10**400 as a number": (_with(valueQuantity={"value": "@@", "unit": "mEq/L"}).replace(VALUE, "1e400"),
                            "exponent beyond"),
    "a 5,000-digit integer": (_with(valueQuantity={"value": "@@", "unit": "mEq/L"}).replace(VALUE, BIG),
                              "more than 40 digits"),
    "~900 nested arrays": (_with(note="@@").replace(VALUE, "[" * 900 + "]" * 900), f"more than {MAX_DEPTH} deep"),
    "coding: null": (_with(code={"coding": None}), "invalid FHIR R4 Observation"),
    "valueQuantity: null": (_with(valueQuantity=None), "Observation"),
    "OperationOutcome issue not a list": (json.dumps(_bundle({"resourceType": "OperationOutcome", "issue": "x"})),
                                          "OperationOutcome"),
    "Bundle.type an object": (json.dumps({**_bundle(PATIENT), "type": {"a": 1}}), "bundle type is not read"),
    "contained of an unknown type": (_with(contained=[{"resourceType": "Foo", "id": "x"}]), "contained"),
    "contained resourceType an object": (_with(contained=[{"resourceType": {"a": 1}}]), "contained"),
    "a lone surrogate": (_with(id="@@").replace(VALUE, '"\\ud800"'), "Observation"),
    # not a code dosewatch reads (nor a valid one): a notice, as every Observation it does not use
    "a coding system that is an object": (_with(code={"coding": [{"system": {"a": 1}, "code": "2823-3"}]}),
                                          "is not used by dosewatch"),
}


@pytest.mark.parametrize("name", list(PROBED))
def test_probed_bundles_are_named_problems(tmp_path, name):
    text, expected = PROBED[name]
    path = tmp_path / "probe.json"
    path.write_text(text)
    result = read_any(path, collect=True)
    shown = " ".join(f"{p.source} {p.field} {p.message} {p.detail}" for p in result.problems)
    assert expected in shown, shown
    if name not in ("OperationOutcome issue not a list", "a coding system that is an object"):
        assert result.errors, shown  # refused, not read


def test_json_bounds_name_line_and_column_and_pass_what_is_within():
    assert json_excess(b'{"a":\n  1e400}').line == 2
    assert json_excess(b'{"a":\n  1e400}').column == 3
    assert json_excess(b'{"a": 1e250, "b": 2.5e-250, "c": "1e400"}') is None  # a string is text
    assert json_excess(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is None
    assert json_excess(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)) is not None
    assert json_excess(b'["' + b"[" * 500 + b'"]') is None  # brackets inside a string
    assert json_excess(b"[" + b"1" * 40 + b"]") is None
    assert json_excess(b"[" + b"1" * 41 + b"]") is not None


def test_sdtm_dates_in_year_0_are_errors_in_validate_not_a_crash(tmp_path):
    folder = tmp_path / "study"
    shutil.copytree(STUDY, folder)
    dm = folder / "dm.csv"
    dm.write_text(dm.read_text().replace("2024-", "0000-"))  # RFXSTDTC, DTHDTC
    with pytest.raises(InputError) as err:
        read_any(folder)
    shown = [str(p) for p in err.value.problems]
    assert any("RFXSTDTC" in s and "before 1583" in s for s in shown), shown[:5]


def test_cli_validate_and_check_report_and_never_trace(tmp_path):
    """The CLI on a mangled bundle: an exit code and a message naming where, no traceback."""
    from typer.testing import CliRunner

    from dosewatch.cli import app

    path = tmp_path / "mangled.json"
    path.write_text(PROBED["contained of an unknown type"][0])
    for command in (["validate", str(path)], ["check", str(path)]):
        out = CliRunner().invoke(app, command)
        assert out.exit_code not in (0, None) and out.exception is None or isinstance(out.exception, SystemExit), \
            (command, out.output, out.exception)
        assert "Traceback" not in out.output and "contained" in out.output, out.output


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(source=st.integers(0, 100), choices=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 100)),
                                                      min_size=1, max_size=3))
def test_validate_and_check_on_mutated_bundles_exit_with_a_message_never_a_traceback(tmp_path, source, choices):
    from typer.testing import CliRunner

    from dosewatch.cli import app

    path = tmp_path / "mutated.json"
    path.write_text(_mutate(CORPUS[source % len(CORPUS)], choices))
    for command in (["validate", str(path)], ["check", "--skip-invalid", str(path)]):
        out = CliRunner().invoke(app, command)
        assert out.exception is None or isinstance(out.exception, SystemExit), (command, repr(out.exception))
        assert "Traceback" not in out.output


_TEXTS = st.text(alphabet='ab"\\[]{}1eE.-+ \n', max_size=30)
_NUMBERS = st.sampled_from([b"1", b"-2.5", b"1e400", b"2.5E-0251", b"1e250", b"3" * 41, b"7" * 40, b"0.1e+999"])


@st.composite
def _json_like(draw, depth=0):
    """JSON texts with strings full of quotes, backslashes and brackets, numbers at and beyond the
    bounds, and nesting around the depth bound."""
    kind = draw(st.integers(0, 3 if depth < 3 else 1))
    if kind == 0:
        return draw(_NUMBERS)
    if kind == 1:
        return json.dumps(draw(_TEXTS)).encode()
    if kind == 2:
        return b"[" + b",".join(draw(st.lists(_json_like(depth + 1), max_size=4))) + b"]"
    nest = draw(st.sampled_from([1, 2, MAX_DEPTH - 2, MAX_DEPTH + 3]))
    return b"[" * nest + draw(_json_like(depth + 1)) + b"]" * nest


@given(_json_like())
@settings(max_examples=300, deadline=None)
def test_json_bounds_on_large_texts_find_what_they_find_on_small_ones(text):
    """The large-text path (one numpy pass over the bytes outside strings) and the small-text path
    (regular expressions) name the same excess, at the same line and column."""
    assert json_excess(text) == json_excess(text + b" " * 5000)
