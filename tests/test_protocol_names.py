"""Protocols checked against what dosewatch knows: an unknown event term, criteria id, drug or
analyte code is refused with its field path and the closest known value (issue 14, item 1)."""
from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dosewatch.analytes import catalog
from dosewatch.cli import app
from dosewatch.criteria.terms import CRITERIA_IDS, reported_terms
from dosewatch.demo import seed_bundle_path
from dosewatch.drugs import drug_catalog
from dosewatch.errors import InputError
from dosewatch.protocols import BUILTIN, builtin, parse_protocol
from dosewatch.store import admin
from dosewatch.store.db import Store
from dosewatch.store.scope import Refused


def data_of(pid: str) -> dict:
    return builtin(pid).model_dump(mode="json", exclude_none=True)


def refused(data: dict) -> list:
    with pytest.raises(InputError) as info:
        parse_protocol(yaml.safe_dump(data), "mine.yaml")
    return info.value.problems


def test_the_typos_of_the_issue_are_refused_with_field_and_suggestion():
    data = data_of("lenalidomide-cll-25mg-2007")
    data["dose_rules"][0]["when"][0]["term"] = "Laboratory tumour lysis syndrome"
    data["study_drug"]["drug"] = "lenalidomid"
    problems = {p.field: p.message for p in refused(data)}
    assert set(problems) == {"dose_rules[0].when[0].term", "study_drug.drug"}
    assert "did you mean 'Laboratory tumor lysis syndrome'?" in problems["dose_rules[0].when[0].term"]
    assert "did you mean 'lenalidomide'?" in problems["study_drug.drug"]


def test_known_names_pass_and_case_of_a_term_does_not_matter():
    data = data_of("lenalidomide-cll-25mg-2007")
    data["dose_rules"][0]["when"][0]["term"] = "LABORATORY TUMOR LYSIS SYNDROME"  # matched case-insensitively
    data["study_drug"]["drug"] = "Lenalidomide"  # the model lower-cases the study drug
    assert parse_protocol(yaml.safe_dump(data), "mine.yaml").study_drug.drug == "lenalidomide"


@pytest.mark.parametrize("mutate, field, says", [
    (lambda d: d["monitoring"][0]["codes"].__setitem__(0, "WCB"), "monitoring[0].codes[0]", "did you mean 'WBC'?"),
    (lambda d: d["prophylaxis"][0].update(drug="Dexamethasone"), "prophylaxis[0].drug", "did you mean 'dexamethasone'?"),
    (lambda d: d["prophylaxis"][0]["alternatives"].__setitem__(0, "predisone"), "prophylaxis[0].alternatives[0]",
     "did you mean 'prednisone'?"),
    (lambda d: d["dlt"]["criteria"][4].update(criteria="iwcll-2081"), "dlt.criteria[4].criteria",
     "did you mean 'iwcll-2018'?"),
    # a criteria id dosewatch knows but this protocol's surveillance never produces
    (lambda d: d["dlt"]["criteria"][0].update(criteria="howard-2011"), "dlt.criteria[0].criteria",
     "no event carries criteria 'howard-2011'"),
    # a term of another criteria than the one named
    (lambda d: d["dose_rules"][1]["when"][0].update(criteria="ctcae-5.0"), "dose_rules[1].when[0].term",
     "not reported under ctcae-5.0"),
    # a CTCAE term dosewatch never reports in CLL
    (lambda d: d["dose_rules"][1]["when"][0].update(term="Lymphocyte count increased"), "dose_rules[1].when[0].term",
     "lymphocytosis is not a toxicity"),
])
def test_each_kind_of_unknown_name_is_refused(mutate, field, says):
    data = data_of("lenalidomide-cll-25mg-2007")
    mutate(data)
    problems = refused(data)
    assert [p.field for p in problems] == [field], problems
    assert says in problems[0].message and problems[0].source == "mine.yaml"


def test_a_term_of_a_ctcae_version_the_protocol_does_not_use_is_refused():
    data = data_of("venetoclax-cll-rampup")
    data["dose_rules"].append({**data["dose_rules"][-1], "id": "plt",
                               "when": [{"term": "Thrombocytopenia", "min_grade": 3}]})  # CTCAE v6.0's name
    problems = refused(data)
    assert [p.field for p in problems] == [f"dose_rules[{len(data['dose_rules']) - 1}].when[0].term"]
    assert "not reported with this protocol's surveillance: ctcae ctcae-5.0" in problems[0].message
    assert "did you mean 'Platelet count decreased'" in problems[0].message  # v5.0's name for it
    data["surveillance"]["ctcae"] = data["surveillance"]["cytopenias"] = "ctcae-6.0"
    for rule in data["dose_rules"]:  # v6.0's name for it
        for t in rule["when"]:
            if t.get("term") == "Platelet count decreased":
                t["term"] = "Thrombocytopenia"
    assert parse_protocol(yaml.safe_dump(data), "mine.yaml").dose_rules[-1].id == "plt"


def _names(data: dict) -> list[tuple[tuple, str]]:
    """(path in the data, kind) of every term, criteria id, drug and analyte code of a protocol."""
    out: list[tuple[tuple, str]] = [(("study_drug", "drug"), "drug")]
    for i, p in enumerate(data.get("prophylaxis", [])):
        out.append((("prophylaxis", i, "drug"), "drug"))
        out += [(("prophylaxis", i, "alternatives", k), "drug") for k in range(len(p.get("alternatives", [])))]
    for i, a in enumerate(data.get("monitoring", [])):
        out += [(("monitoring", i, "codes", k), "code") for k in range(len(a["codes"]))]
    for i, r in enumerate(data.get("dose_rules", [])):
        for k, t in enumerate(r["when"]):
            out += [(("dose_rules", i, "when", k, key), key) for key in ("term", "criteria") if key in t]
    for i, c in enumerate(data["dlt"]["criteria"]):
        out += [(("dlt", "criteria", i, key), key) for key in ("term", "criteria") if key in c]
    return out


def _field(path: tuple) -> str:
    """("dose_rules", 0, "when", 1, "term") -> "dose_rules[0].when[1].term"."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def _known(kind: str, value: str) -> bool:
    if kind == "drug":
        return value.lower() in drug_catalog().drugs
    if kind == "code":
        return value in catalog().analytes
    if kind == "criteria":
        return value in CRITERIA_IDS
    return value.lower() in {t.lower() for terms in reported_terms().values() for t in terms}


@st.composite
def typo(draw, text: str) -> str:
    """One edit of ``text``: a letter dropped, doubled, replaced or two letters swapped."""
    i = draw(st.integers(0, len(text) - 1))
    how = draw(st.sampled_from(["drop", "double", "replace", "swap"]))
    if how == "drop" and len(text) > 1:
        return text[:i] + text[i + 1:]
    if how == "double":
        return text[:i] + text[i] + text[i:]
    if how == "swap" and i + 1 < len(text):
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    return text[:i] + draw(st.sampled_from("aeiouxz-")) + text[i + 1:]


@pytest.mark.parametrize("pid", BUILTIN)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_name_of_a_builtin_protocol_mistyped_is_refused_naming_its_field(pid, data):
    protocol = data_of(pid)
    names = _names(protocol)
    path, kind = data.draw(st.sampled_from(names))
    node = protocol
    for part in path[:-1]:
        node = node[part]
    wrong = data.draw(typo(node[path[-1]]))
    assume(not _known(kind, wrong))
    node[path[-1]] = wrong
    problems = refused(protocol)
    assert _field(path) in {p.field for p in problems}, (wrong, problems)
    assert all(p.kind == "unknown" for p in problems)


def test_every_name_of_every_builtin_protocol_is_covered_by_the_property():
    # the property draws from these lists: none may be empty or miss a kind
    for pid in BUILTIN:
        kinds = {k for _, k in _names(data_of(pid))}
        assert {"drug", "code", "term"} <= kinds, pid
    assert any(k == "criteria" for _, k in _names(data_of("lenalidomide-cll-25mg-2007")))


# -- the commands and the server --------------------------------------------------------------------

@pytest.fixture
def bad_protocol(tmp_path):
    data = data_of("lenalidomide-cll-25mg-2007")
    data["dose_rules"][0]["when"][0]["term"] = "Laboratory tumour lysis syndrome"
    path = tmp_path / "BAD.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_protocol_validate_exits_non_zero_naming_the_field(bad_protocol):
    out = CliRunner().invoke(app, ["protocol", "validate", str(bad_protocol)])
    assert out.exit_code == 1
    assert re.search(r"BAD\.yaml: dose_rules\[0\]\.when\[0\]\.term: unknown event term 'Laboratory tumour lysis "
                     r"syndrome'.*did you mean 'Laboratory tumor lysis syndrome'", out.output)
    assert "valid protocol" not in out.output


def test_check_with_a_bad_protocol_exits_non_zero(bad_protocol):
    out = CliRunner().invoke(app, ["check", str(seed_bundle_path()), "--protocol", str(bad_protocol)])
    assert out.exit_code != 0 and "dose_rules[0].when[0].term" in out.output


def test_check_overriding_surveillance_is_checked_again():
    # the 25 mg protocol's DLT names iwcll-2018 cytopenias: graded by CTCAE they could never fire
    out = CliRunner().invoke(app, ["check", str(seed_bundle_path()), "--protocol", "lenalidomide-cll-25mg-2007",
                                   "--cytopenias", "ctcae-5.0"])
    assert out.exit_code != 0 and "dlt.criteria[4].criteria" in out.output
    ok = CliRunner().invoke(app, ["check", str(seed_bundle_path()), "--protocol", "venetoclax-cll-rampup",
                                  "--tls", "howard-2011", "--format", "json"])
    assert ok.exit_code == 0, ok.output


def test_the_server_refuses_a_bad_protocol_version(bad_protocol, tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'x.db'}")
    s.upgrade()
    with pytest.raises(InputError, match=r"dose_rules\[0\]\.when\[0\]\.term"):
        with s.writing() as session:
            admin.add_trial(session, "test", "BAD", str(bad_protocol))
    with s.writing() as session:
        admin.add_trial(session, "test", "T", "lenalidomide-cll-25mg-2007")
    data = yaml.safe_load(bad_protocol.read_text())
    data["version"] = 2
    bad_protocol.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="did you mean 'Laboratory tumor lysis syndrome'"):
        with s.writing() as session:
            admin.new_protocol_version(session, "test", admin.trial_by_code(session, "T"), str(bad_protocol), "typo")
    with s.reading() as session:
        assert admin.trial_by_code(session, "T").protocol_version == 1
        with pytest.raises(Exception) as gone:
            admin.trial_by_code(session, "BAD")
        assert not isinstance(gone.value, Refused)
    s.dispose()
