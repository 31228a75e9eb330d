"""Problems grouped for people: no problem is lost by grouping, and where each one is stays known."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dosewatch.errors import SEVERITIES, InputError, Problem, counts, group_problems, report_text, summary_text

FILES = ["LB.csv", "VS.csv", "b.json"]


@st.composite
def problems(draw):
    file = draw(st.sampled_from(FILES))
    where = (f"{file} row {draw(st.integers(1, 60_000))}" if file.endswith(".csv")
             else f"{file} {draw(st.sampled_from(['Observation', 'Condition']))}/{draw(st.integers(0, 50))}")
    return Problem(where, draw(st.sampled_from(["LBTESTCD", "LBORRES", "code", "subject"])),
                   draw(st.sampled_from(["test code BUN is not used", "non-numeric result", "no unit"])),
                   draw(st.sampled_from(SEVERITIES)), draw(st.sampled_from(["not-used", "value", "unit", ""])),
                   draw(st.sampled_from(["", "'abc'", "as row 4"])), file)


@settings(max_examples=200, deadline=None)
@given(st.lists(problems(), max_size=120), st.integers(0, 8))
def test_grouping_loses_no_problem(found, keep):
    groups = group_problems(found, keep)
    assert sum(g.count for g in groups) == len(found)
    for severity, n in counts(found).items():
        assert sum(g.count for g in groups if g.severity == severity) == n
    # each group is its problems' shared description, and lists at most `keep` of them, in input order
    for g in groups:
        members = [p for p in found if (p.severity, p.location()[0], p.field, p.kind, p.message)
                   == (g.severity, g.file, g.field, g.kind, g.message)]
        assert len(members) == g.count
        where = [p.location()[1] if p.location()[1] is not None else p.location()[2] for p in members]
        assert (g.rows or g.resources) == where[:keep]
        assert len(g.details) <= keep and set(g.details) <= {p.detail for p in members if p.detail}
    # most severe first
    ranks = [SEVERITIES.index(g.severity) for g in groups]
    assert ranks == sorted(ranks)


@settings(max_examples=50, deadline=None)
@given(st.lists(problems(), min_size=1, max_size=80))
def test_the_report_and_the_summary_count_everything(found):
    c = counts(found)
    head = report_text(found)[0]
    for severity in SEVERITIES:
        assert f"{c[severity]:,} {severity}" in head
    assert len(summary_text(found, limit=100)) == len({(p.severity, p.location()[0], p.field, p.kind) for p in found})


def test_location_of_rows_resources_and_files():
    assert Problem("LB.csv row 12", "LBORRES", "x", file="LB.csv").location() == ("LB.csv", 12, None)
    assert Problem("adlb.csv data row 3", "AVAL", "x").location() == ("adlb.csv", 3, None)
    assert Problem("my bundle.json Observation/k-1", "code", "x", file="my bundle.json").location() == (
        "my bundle.json", None, "Observation/k-1")
    assert Problem("study", "(folder)", "x").location() == ("study", None, None)


def test_an_input_error_names_each_problem_or_groups_many():
    few = InputError([Problem("LB.csv row 3", "LBORRES", "non-numeric result", detail="'abc'")])
    assert str(few) == "1 problem(s) in the input:\n  LB.csv row 3: LBORRES: non-numeric result ('abc')"
    many = InputError([Problem(f"LB.csv row {i}", "LBORRES", "non-numeric result", file="LB.csv")
                       for i in range(1, 101)])
    assert str(many).splitlines() == ["100 problem(s) in the input:",
                                      "  LB.csv: LBORRES: non-numeric result [100 rows: 1, 2, 3, 4, 5, ...]"]
