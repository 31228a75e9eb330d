"""CDISC Dataset-JSON v1.1: one dataset per file, its columns' metadata and its rows as arrays.

Written through odmlib's Dataset-JSON v1.1 model (``odmlib.dataset_json_1_1``), which checks the
file-level fields and each column's name, type and length; rows are the frame's values in column
order. Types follow the Define-XML ``DataType`` of each variable (``submission.VariableSpec``):

| Define-XML | Dataset-JSON ``dataType`` | value |
| --- | --- | --- |
| text | string | the text (an ISO 8601 --DTC stays a string: it may be partial) |
| integer | integer | a JSON integer |
| float | double | a JSON number (Python's shortest repr: reads back to the same float) |
| date (an ADaM numeric date) | date, ``targetDataType`` integer, DATE9. | ISO 8601 date; a SAS date number in XPT |

A missing value is ``null``. ``read_dataset_json`` reads such a file back into a polars frame.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

VERSION = "1.1.0"


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    label: str
    data_type: str  # Define-XML DataType: text | integer | float | date | datetime
    length: int | None = None  # text: the longest value in bytes
    key_sequence: int | None = None
    display_format: str | None = None
    origin: str = "Derived"  # Define-XML def:Origin Type
    mandatory: bool = False
    source: str = ""  # where the label and the rule come from


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label: str
    columns: list[ColumnSpec] = field(default_factory=list)
    klass: str = ""  # Define-XML def:Class
    structure: str = ""
    purpose: str = "Tabulation"  # or Analysis
    standard: str = "SDTMIG"  # or ADaMIG

    @property
    def item_group_oid(self) -> str:
        return f"IG.{self.name}"

    def item_oid(self, column: ColumnSpec) -> str:
        return f"IT.{self.name}.{column.name}"


def json_type(column: ColumnSpec, dtype: pl.DataType) -> tuple[str, str | None]:
    """(dataType, targetDataType) of a column: a polars Date column is an ADaM numeric date."""
    if dtype == pl.Date:
        return "date", "integer"
    return {"text": "string", "date": "string", "datetime": "string", "integer": "integer",
            "float": "double"}[column.data_type], None


def _json_ready(df: pl.DataFrame) -> pl.DataFrame:
    """Whole columns in the form JSON holds: dates as ISO 8601 text, NaN and infinities as null."""
    return df.with_columns(
        [pl.col(c).dt.strftime("%Y-%m-%d") for c, t in df.schema.items() if t == pl.Date]
        + [pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(c) for c, t in df.schema.items() if t.is_float()])


def dataset_json(df: pl.DataFrame, spec: DatasetSpec, *, study_oid: str, mdv_oid: str, metadata_ref: str | None,
                 created: str, originator: str, source_version: str) -> dict[str, Any]:
    """The Dataset-JSON v1.1 object of ``df`` (columns in ``spec`` order)."""
    from odmlib.dataset_json_1_1 import Column, DatasetJSON, SourceSystem

    names = [c.name for c in spec.columns]
    if names != df.columns:
        raise ValueError(f"{spec.name}: the frame's columns {df.columns} differ from the metadata's {names}")
    columns = []
    for c in spec.columns:
        data_type, target = json_type(c, df.schema[c.name])
        kw: dict[str, Any] = {"itemOID": spec.item_oid(c), "name": c.name, "label": c.label, "dataType": data_type}
        if target:
            kw["targetDataType"] = target
        if c.length and data_type == "string":
            kw["length"] = c.length
        if c.display_format:
            kw["displayFormat"] = c.display_format
        if c.key_sequence:
            kw["keySequence"] = c.key_sequence
        columns.append(Column(**kw))
    rows = [list(row) for row in _json_ready(df).iter_rows()]
    doc = DatasetJSON(datasetJSONCreationDateTime=created, datasetJSONVersion=VERSION,
                      fileOID=f"{study_oid}.{spec.name}", originator=originator,
                      sourceSystem=SourceSystem(name="dosewatch", version=source_version), studyOID=study_oid,
                      metaDataVersionOID=mdv_oid, itemGroupOID=spec.item_group_oid, records=df.height,
                      name=spec.name, label=spec.label, columns=columns, rows=rows)
    out = doc.to_dict()
    if metadata_ref:
        out["metaDataRef"] = metadata_ref
    return out


def write_dataset_json(df: pl.DataFrame, spec: DatasetSpec, path: str | Path, **kw: Any) -> Path:
    path = Path(path)
    text = json.dumps(dataset_json(df, spec, **kw), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    path.write_text(text, encoding="utf-8")
    return path


_POLARS = {"string": pl.String, "integer": pl.Int64, "double": pl.Float64, "float": pl.Float64,
           "decimal": pl.Float64, "boolean": pl.Boolean}


def read_dataset_json(path: str | Path) -> tuple[pl.DataFrame, dict[str, Any]]:
    """(rows as a typed frame, the file's metadata without rows). ADaM numeric dates (dataType
    date, targetDataType integer) come back as polars dates; other dates and times stay text."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    columns = doc["columns"]
    schema: dict[str, pl.DataType] = {}
    for c in columns:
        if c["dataType"] in ("date", "datetime", "time", "URI"):
            schema[c["name"]] = pl.String
        else:
            schema[c["name"]] = _POLARS[c["dataType"]]
    rows = doc.get("rows") or []
    df = pl.DataFrame(rows, schema=schema, orient="row")
    dates = [c["name"] for c in columns if c["dataType"] == "date" and c.get("targetDataType") == "integer"]
    if dates:
        df = df.with_columns(pl.col(dates).str.to_date("%Y-%m-%d"))
    meta = {k: v for k, v in doc.items() if k != "rows"}
    if meta.get("records") != df.height:
        raise ValueError(f"{Path(path).name}: records says {meta.get('records')} but the file has {df.height} rows")
    return df, meta
