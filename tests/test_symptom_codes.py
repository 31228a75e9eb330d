"""Standard symptom and site codes (issue 14, item 5): a 0-10 pain score sent with LOINC 72514-3 is
read (FHIR and SDTM), counts as the protocol's pain assessment and grades the flare by Serlin 1995;
lymph-node regions are matched by their SNOMED CT body-site code, by text only as a fallback."""
from __future__ import annotations

import copy
import datetime as dt
import json

import polars as pl
import pytest

from dosewatch.demo import seed_bundle_path
from dosewatch.io import read_any
from dosewatch.io.sdtm_write import write_sdtm
from dosewatch.monitor import evaluate
from dosewatch.protocols import builtin

LEN = builtin("lenalidomide-cll-25mg-2007")
NRS = {"system": "http://loinc.org", "code": "72514-3",
       "display": "Pain severity - 0-10 verbal numeric rating [Score] - Reported"}
# seed-3's pain grades (CTCAE words 0-3) as 0-10 scores inside each Serlin band
AS_SCORE = {0.0: 0, 1.0: 3, 2.0: 5, 3.0: 8}


def seed3_bundle() -> dict:
    bundle = json.loads(seed_bundle_path().read_text())
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["id"] == "seed-3"
                       or e["resource"].get("subject", {}).get("reference") == "Patient/seed-3"]
    return bundle


def pains(bundle: dict):
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Observation" and r["code"]["coding"][0].get("code") == "PAIN":
            yield r


def as_nrs(bundle: dict, shape: str = "score", keep_finding: bool = False, flare_day_score: int | None = None) -> dict:
    out = copy.deepcopy(bundle)
    for r in pains(out):
        score = AS_SCORE[r["valueQuantity"]["value"]]
        if flare_day_score is not None and r["effectiveDateTime"].startswith("2007-05-14"):  # day 8: the flare
            score = flare_day_score
        r["code"] = {"coding": ([r["code"]["coding"][0]] if keep_finding else []) + [NRS], "text": "Pain 0-10"}
        r.pop("valueQuantity")
        if shape == "integer":
            r["valueInteger"] = score
        elif shape == "no unit":
            r["valueQuantity"] = {"value": score}
        else:
            r["valueQuantity"] = {"value": score, "unit": "{score}", "system": "http://unitsofmeasure.org",
                                  "code": "{score}"}
    return out


def read(bundle: dict, tmp_path, name="b.json"):
    path = tmp_path / name
    path.write_text(json.dumps(bundle))
    return read_any(path)


@pytest.mark.parametrize("shape", ["score", "integer", "no unit"])
def test_a_0_10_pain_score_with_loinc_72514_3_is_read(tmp_path, shape):
    got = read(as_nrs(seed3_bundle(), shape), tmp_path)
    assert not [p for p in got.problems if p.severity == "error"]
    obs = got.cohort.observations
    assert obs.filter(pl.col("code") == "PAIN").is_empty()
    nrs = obs.filter(pl.col("code") == "PAINNRS")
    assert nrs.height == len(list(pains(seed3_bundle()))) and set(nrs["value"].to_list()) <= {0.0, 3.0, 5.0, 8.0}


def test_loinc_wins_over_a_pain_grade_code_beside_it(tmp_path):
    # coded both as dosewatch's PAIN (0-3) and as LOINC 72514-3: the value is a 0-10 score, not implausible
    got = read(as_nrs(seed3_bundle(), keep_finding=True), tmp_path)
    assert not [p for p in got.problems if p.severity == "error"]
    assert got.cohort.observations.filter(pl.col("code") == "PAIN").is_empty()


def test_a_0_10_score_counts_as_the_required_pain_assessment(tmp_path):
    as_of = dt.date(2007, 5, 7) + dt.timedelta(days=13)  # seed-3 day 14
    nrs = evaluate(read(as_nrs(seed3_bundle()), tmp_path).cohort, LEN, as_of)[0]
    assert not [f for f in nrs.adherence if f.kind == "lab-missing" and "PAIN" in f.message]
    none = seed3_bundle()
    none["entry"] = [e for e in none["entry"] if e["resource"] not in list(pains(none))]
    gone = evaluate(read(none, tmp_path, "none.json").cohort, LEN, as_of)[0]
    missing = [f for f in gone.adherence if f.kind == "lab-missing"]
    assert missing and all(f.message.endswith("PAIN") for f in missing)


@pytest.mark.parametrize(("score", "grade"), [(6, 2), (7, 3)])
def test_the_score_grades_the_flare_by_serlin_1995(tmp_path, score, grade):
    cohort = read(as_nrs(seed3_bundle(), flare_day_score=score), tmp_path).cohort
    a = evaluate(cohort, LEN, dt.date(2007, 5, 14))[0]  # day 8
    (flare,) = [e for e in a.events if e.term == "Tumor flare reaction"]
    assert flare.grade == grade
    assert any(ev.code == "PAINNRS" and ev.value == score for ev in flare.evidence)


def test_sdtm_reads_the_score_by_its_loinc_code(tmp_path):
    cohort = read(as_nrs(seed3_bundle()), tmp_path).cohort
    write_sdtm(cohort, tmp_path / "sdtm")
    pe = pl.read_csv(tmp_path / "sdtm" / "pe.csv", infer_schema=False)
    pe = pe.with_columns(PETESTCD=pl.when(pl.col("PETESTCD") == "PAINNRS").then(pl.lit("PAINSEV"))
                         .otherwise("PETESTCD"),
                         PELOINC=pl.when(pl.col("PETESTCD") == "PAINNRS").then(pl.lit("72514-3")))
    pe.write_csv(tmp_path / "sdtm" / "pe.csv")
    got = read_any(tmp_path / "sdtm")
    assert not [p for p in got.problems if p.severity == "error"]
    assert got.cohort.observations.filter(pl.col("code") == "PAINNRS").height == len(list(pains(seed3_bundle())))


# -- lymph-node regions ------------------------------------------------------------------------------

CERVICAL = "81105003"  # SNOMED CT: Cervical lymph node structure


def coded_sites(bundle: dict, later_text: str, code: bool) -> dict:
    """seed-3's cervical node coded with SNOMED CT; after day 1 its text written differently."""
    out = copy.deepcopy(bundle)
    for e in out["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Observation" and r.get("bodySite", {}).get("text") == "cervical":
            late = r["effectiveDateTime"][:10] > "2007-05-07"
            r["bodySite"] = {"text": later_text if late else "cervical"}
            if code:
                r["bodySite"]["coding"] = [{"system": "http://snomed.info/sct", "code": CERVICAL}]
    return out


def flare_onset(cohort) -> list[dt.date]:
    return [e.onset for e in evaluate(cohort, LEN, dt.date(2007, 5, 20))[0].events if e.term == "Tumor flare reaction"]


def test_a_region_spelled_differently_keeps_its_baseline_by_its_snomed_code(tmp_path):
    plain = read(seed3_bundle(), tmp_path, "plain.json")
    coded = read(coded_sites(seed3_bundle(), "Left neck nodes", code=True), tmp_path, "coded.json")
    assert set(coded.cohort.observations.filter(pl.col("code") == "LNDIAM")["site"].drop_nulls()) == \
        set(plain.cohort.observations.filter(pl.col("code") == "LNDIAM")["site"].drop_nulls())
    assert flare_onset(coded.cohort) == flare_onset(plain.cohort)
    warned = [p for p in coded.problems if p.field == "bodySite.text"]
    assert warned and all(p.severity == "warning" and CERVICAL in p.message for p in warned)
    assert not [p for p in plain.problems if p.field == "bodySite.text"]


def test_text_only_is_a_fallback_matched_up_to_case_and_spacing(tmp_path):
    same = read(coded_sites(seed3_bundle(), "Cervical ", code=False), tmp_path, "case.json")
    assert "Cervical " not in set(same.cohort.observations["site"].drop_nulls())
    assert [p for p in same.problems if p.field == "bodySite.text" and p.severity == "warning"]
    # another word without a code is another region: no baseline, and no warning can tell
    other = read(coded_sites(seed3_bundle(), "neck", code=False), tmp_path, "other.json")
    assert "neck" in set(other.cohort.observations["site"].drop_nulls())


def test_sdtm_regions_are_matched_up_to_case_and_spacing(tmp_path):
    cohort = read(seed3_bundle(), tmp_path).cohort
    write_sdtm(cohort, tmp_path / "sdtm")
    tr = pl.read_csv(tmp_path / "sdtm" / "tr.csv", infer_schema=False)
    later = pl.col("TRDTC").str.slice(0, 10) > "2007-05-07"
    tr.with_columns(TRLOC=pl.when(later & (pl.col("TRLOC") == "cervical")).then(pl.lit(" Cervical"))
                    .otherwise("TRLOC")).write_csv(tmp_path / "sdtm" / "tr.csv")
    got = read_any(tmp_path / "sdtm")
    sites = set(got.cohort.observations.filter(pl.col("code") == "LNDIAM")["site"].drop_nulls())
    assert sites == set(cohort.observations.filter(pl.col("code") == "LNDIAM")["site"].drop_nulls())
    warned = [p for p in got.problems if p.field == "TRLOC"]
    assert warned and all(p.severity == "warning" and "read as 'cervical'" in p.message for p in warned)
    assert flare_onset(got.cohort) == flare_onset(cohort)
