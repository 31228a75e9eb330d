"""Define-XML 2.1 for a set of Dataset-JSON datasets, built with odmlib's Define-XML 2.1 model
(``odmlib.define_2_1``), checked against the Define-XML 2.1 schema CDISC publishes (shipped by
``defineutils``) and rendered to HTML with the CDISC stylesheet (``define2-1.xsl``, Lex Jansen,
MIT, shipped by ``defineutils``).

One ItemGroupDef per dataset (purpose, structure, class, standard, keys, the file as ``def:leaf``),
one ItemDef per variable (data type, length, label, origin), two standards (SDTMIG 3.4 and ADaMIG
1.3). Controlled terminology is named in the labels' sources, not as CodeLists (not here yet)."""
from __future__ import annotations

from pathlib import Path

from .dataset_json import DatasetSpec

STANDARDS = {"SDTMIG": ("STD.SDTMIG.3-4", "3.4"), "ADaMIG": ("STD.ADaMIG.1-3", "1.3")}


def _description(model, text: str):
    d = model.Description()
    d.TranslatedText.append(model.TranslatedText(_content=text, lang="en"))
    return d


def build_define(specs: list[DatasetSpec], files: dict[str, str], *, study_oid: str, study_name: str,
                 description: str, protocol_name: str, created: str, source_version: str):
    """The odmlib ODM object of the Define-XML 2.1 document describing ``specs`` (``files``: dataset
    name -> file name, relative to the define)."""
    import odmlib.define_2_1.model as D

    odm = D.ODM(FileOID=f"{study_oid}.DEFINE", AsOfDateTime=created, CreationDateTime=created, ODMVersion="1.3.2",
                FileType="Snapshot", Originator="dosewatch", SourceSystem="dosewatch",
                SourceSystemVersion=source_version, Context="Other")
    study = D.Study(OID=study_oid)
    study.GlobalVariables = D.GlobalVariables(StudyName=D.StudyName(_content=study_name),
                                              StudyDescription=D.StudyDescription(_content=description),
                                              ProtocolName=D.ProtocolName(_content=protocol_name))
    mdv = D.MetaDataVersion(OID=f"MDV.{study_oid}", Name=f"{study_name} data definitions",
                            Description="SDTM and ADaM datasets written by dosewatch", DefineVersion="2.1.0")
    standards = D.Standards()
    used = [s for s in STANDARDS if any(spec.standard == s for spec in specs)]
    for name in used:
        oid, version = STANDARDS[name]
        standards.Standard.append(D.Standard(OID=oid, Name=name, Type="IG", Version=version, Status="Final"))
    mdv.Standards = standards
    for spec in specs:
        tabulation = spec.purpose == "Tabulation"
        igd = D.ItemGroupDef(OID=spec.item_group_oid, Name=spec.name, Repeating="No" if spec.name == "DM" else "Yes",
                             SASDatasetName=spec.name, IsReferenceData="No", Purpose=spec.purpose,
                             Structure=spec.structure, ArchiveLocationID=f"LF.{spec.name}",
                             StandardOID=STANDARDS[spec.standard][0], **({"Domain": spec.name} if tabulation else {}))
        igd.Description = _description(D, spec.label)
        for order, c in enumerate(spec.columns, start=1):
            ref = {"ItemOID": spec.item_oid(c), "Mandatory": "Yes" if c.mandatory else "No", "OrderNumber": order}
            if c.key_sequence:
                ref["KeySequence"] = c.key_sequence
            igd.ItemRef.append(D.ItemRef(**ref))
        igd.Class = D.Class(Name=spec.klass)
        igd.leaf = D.leaf(ID=f"LF.{spec.name}", href=files[spec.name], title=D.title(_content=files[spec.name]))
        mdv.ItemGroupDef.append(igd)
        for c in spec.columns:
            kw = {"OID": spec.item_oid(c), "Name": c.name, "DataType": c.data_type, "SASFieldName": c.name}
            if c.data_type in ("text", "integer", "float") and c.length:
                kw["Length"] = c.length
            if c.display_format:
                kw["DisplayFormat"] = c.display_format
            item = D.ItemDef(**kw)
            item.Description = _description(D, c.label)
            item.Origin.append(D.Origin(Type=c.origin))
            mdv.ItemDef.append(item)
    study.MetaDataVersion = mdv
    odm.Study = study
    return odm


def write_define(odm, path: str | Path) -> Path:
    """Write the Define-XML and check it against the Define-XML 2.1 schema (ValueError naming the
    first problem if it does not validate: dosewatch never hands out an invalid define)."""
    path = Path(path)
    odm.write_xml(str(path))
    problem = schema_problem(path)
    if problem:
        raise ValueError(f"{path.name} does not validate against the Define-XML 2.1 schema: {problem}")
    return path


def schema_problem(path: str | Path) -> str | None:
    """None when ``path`` validates against the published Define-XML 2.1 schema, else the reason."""
    from defineutils.validate.validate import DefineSchemaValidationError, DefineSchemaValidator

    try:
        DefineSchemaValidator(Path(path)).validate_define_file()
    except DefineSchemaValidationError as exc:
        return str(exc)
    return None


def write_define_html(define: str | Path, path: str | Path) -> Path:
    """The define rendered for people with the CDISC Define-XML 2.1 stylesheet."""
    from defineutils.definehtml.definehtml import DefineHtml

    html = DefineHtml(Path(define)).transform_to_html_string()
    if not html:
        raise ValueError(f"{Path(define).name}: the Define-XML stylesheet gave no HTML")
    Path(path).write_bytes(html)
    return Path(path)
