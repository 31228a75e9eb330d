"""Reading Observations and DiagnosticReports: the analyte from its codes, the value, unit and
comparator, the conversion to the canonical unit, and what is out of dosewatch's scope (a notice)."""
from __future__ import annotations

from typing import Any

from .. import units
from ..analytes import LOINC, Analyte
from ..errors import UnitError
from .fhir_base import BODY_POSITION_URL, QUALIFIERS_URL, SNOMED, UCUM, _codings, _concept_text, _describe, _extension, _relative, _unit

_COMPARATORS = {"<", "<=", ">", ">="}


class FindingReading:
    """Methods of the FHIR reader (``fhir._Reader``), kept apart by what they read."""

    def report(self, res: dict, rid: str) -> None:
        """Remember a DiagnosticReport's time for the results it lists (only that is read of it)."""
        period = res.get("effectivePeriod")
        text = res.get("effectiveDateTime") or (period.get("start") if isinstance(period, dict) else None)
        results = res.get("result")
        if not isinstance(text, str) or not isinstance(results, list):
            return
        for r in results:
            ref = r.get("reference") if isinstance(r, dict) else None
            if isinstance(ref, str):
                self.report_time.setdefault(ref, (f"DiagnosticReport/{rid}", text))
                relative = _relative(ref, "Observation")
                if relative:
                    self.report_time.setdefault(relative, (f"DiagnosticReport/{rid}", text))

    # -- Observation
    def observation(self, res: dict, obs_id: str, where: str) -> None:
        status = res.get("status")
        if status in ("entered-in-error", "cancelled"):
            self.notice(where, "status", f"status {status}: not read", "not-done")
            return
        n0 = self.n_errors
        pid = self.subject(res, where)
        when = self.when(res, where, ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant"),
                         "effective[x]", f"Observation/{obs_id}")
        site = None
        qualifiers = self.qualifiers(res)
        resource_ok = self.n_errors == n0
        analyte, _ = self.analyte(res.get("code"))
        parts = []  # (json holding the value, obs id, analyte, field prefix)
        for j, comp in enumerate(res.get("component") or []):
            comp_analyte, code = self.analyte(comp.get("code")) if isinstance(comp, dict) else (None, None)
            if comp_analyte is None:
                self.notice(where, f"component[{j}].code", f"component {_describe(comp.get('code'))} is not used "
                            "by dosewatch" if isinstance(comp, dict) else "component is not an object")
            else:
                parts.append((comp, f"{obs_id}#{code}", comp_analyte, f"component[{j}]."))
        has_value = any(k.startswith("value") for k in res)
        if analyte is not None and (has_value or not parts):
            parts.insert(0, (res, obs_id, analyte, ""))
        for part, row_id, part_analyte, prefix in parts:
            m0 = self.n_errors
            row = self.measurement(part, part_analyte, where, prefix)
            if row is None or not resource_ok or self.n_errors > m0:
                continue
            if part_analyte.sited:
                site = site or self.node_site(res.get("bodySite"), pid, where)
                if site is None:
                    self.warn(where, "bodySite", f"{part_analyte.name} without a lymph-node site", "value")
            row.update(patient_id=pid, obs_id=row_id, **when._asdict(), site=site if part_analyte.sited else None,
                       qualifiers=qualifiers, source=f"{self.name} Observation/{row_id}")
            key = (pid, row["code"], when.time, row["site"], qualifiers, row["value"])
            if key in self.same_content:  # the same result recorded twice (Synthea: in two encounters)
                self.warn(where, f"{prefix}value[x]", "the same result as another Observation (patient, code, "
                          "time, site, qualifiers and value): read once", "repeated",
                          f"Observation/{self.same_content[key]}")
                continue
            self.same_content[key] = row_id
            self.observations.append(row)

    def node_site(self, concept: Any, pid: str | None, where: str) -> str | None:
        """A lymph-node region, matched by its SNOMED CT body-site code: every record of a patient with the
        same code gets the name the first one gave, so that a region spelled differently on another day
        keeps its baseline (a warning says so). Without a code, the text is the region (a fallback); a
        text that differs from an earlier one of the patient only in case or spacing is read as it, with
        a warning."""
        names: dict[tuple, str] = self.__dict__.setdefault("_node_sites", {})
        text = _concept_text(concept)
        code = next((c.get("code") for c in _codings(concept)
                     if c.get("system") == SNOMED and isinstance(c.get("code"), str)), None)
        if code is not None:
            first = names.setdefault((pid, "code", code), " ".join(text.split()) if text else f"SNOMED CT {code}")
            names.setdefault((pid, "text", first.lower()), first)
            if text and " ".join(text.split()) != first:
                self.warn(where, "bodySite.text", f"lymph-node region matched by its SNOMED CT code {code}: read as "
                          f"'{first}', the name an earlier record gave it", "site", f"text '{text}'")
            return first
        if not text:
            return None
        plain = " ".join(text.split())
        first = names.setdefault((pid, "text", plain.lower()), plain)
        if text != first:
            self.warn(where, "bodySite.text", f"lymph-node region without a SNOMED CT code, matched by its text: "
                      f"read as '{first}', as an earlier record wrote it", "site", f"text '{text}'")
        return first

    def qualifiers(self, res: dict) -> str | None:
        """What tells this finding apart from another of the same code and time: the body position
        (extension observation-bodyPosition) and dosewatch's own qualifiers extension."""
        written = _extension(res, QUALIFIERS_URL)
        if isinstance(written, str):
            return written
        position = _extension(res, BODY_POSITION_URL)
        text = _concept_text(position) if isinstance(position, dict) else None
        return f"POS={text.upper()}" if text else None

    def analyte(self, concept: Any) -> tuple[Analyte | None, str | None]:
        """The analyte a concept codes (LOINC, dosewatch's finding codes or a site's local codes), and the
        code that matched."""
        # a LOINC code first: 72514-3 beside a dosewatch PAIN code says the value is a 0-10 score
        codings = sorted(_codings(concept), key=lambda c: c.get("system") != LOINC)
        for coding in codings:
            system, code = coding.get("system"), coding.get("code")
            if not (isinstance(system, str) and isinstance(code, str)):  # not yet validated: any JSON
                continue
            found = self.cat.for_coding(system, code)
            if found is not None:
                return found, coding.get("code")
        return None, None

    def measurement(self, part: dict, analyte: Analyte, where: str, prefix: str) -> dict | None:
        """Value and reference range of an Observation or one of its components, in canonical units."""
        comparator = None
        if "valueQuantity" in part:
            qty = part["valueQuantity"]
            if not isinstance(qty, dict) or qty.get("value") is None:
                self.error(where, f"{prefix}valueQuantity.value", "no value", "value")
                return None
            comparator = qty.get("comparator")
            if comparator is not None:
                if comparator not in _COMPARATORS:
                    self.error(where, f"{prefix}valueQuantity.comparator", "unknown comparator", "value",
                               repr(comparator))
                    return None
                self.warn(where, f"{prefix}valueQuantity.comparator", "result given as a bound: read as the bound "
                          "with its comparator, graded as the grade the bound guarantees", "comparator",
                          f"{comparator}{qty['value']}")
            orig_value = float(qty["value"])
            orig_unit = self.quantity_unit(qty, analyte, where, f"{prefix}valueQuantity")
            field = f"{prefix}valueQuantity.unit"
        elif "valueInteger" in part:
            orig_value, orig_unit, field = float(part["valueInteger"]), None, f"{prefix}valueInteger"
        elif "valueBoolean" in part:
            orig_value, orig_unit, field = float(part["valueBoolean"]), None, f"{prefix}valueBoolean"
        else:
            found = next((k for k in part if k.startswith("value")), None)
            absent = _concept_text(part.get("dataAbsentReason"))
            if found:
                self.error(where, f"{prefix}{found}", f"{found} is not read (valueQuantity, valueInteger or "
                           "valueBoolean)", "value")
            else:
                self.notice(where, f"{prefix}value[x]", "no value" + (" (data absent)" if absent else ""),
                            "not-done", absent or "")
            return None
        if orig_unit is None and analyte.unit != "1":
            if not analyte.assume_unit:
                self.error(where, field, f"no unit ({analyte.name} is read in {analyte.unit} or a unit convertible "
                           "to it)", "unit")
                return None
            self.warn(where, field, f"no unit: read as {analyte.unit}, the unit {analyte.name} is measured in",
                      "assumed")
            orig_unit = analyte.unit
        conversion = self.conversion(analyte, orig_unit, where, field)
        if conversion is None:
            return None
        value = orig_value * conversion[0] + conversion[1]
        if value != value or abs(value) == float("inf"):
            self.error(where, field.replace(".unit", ".value"), "not a finite number", "value")
            return None
        low, high = analyte.plausible
        if not low <= value <= high:
            shown = f"{orig_value:g} {orig_unit or ''}".strip()
            self.error(where, field.replace(".unit", ".value"), f"implausible {analyte.name} (plausible "
                       f"{low:g}-{high:g} {analyte.unit})", "implausible", f"{shown} = {value:g} {analyte.unit}")
            return None
        row = {"code": analyte.code, "value": value, "unit": analyte.unit,
               "orig_value": orig_value, "orig_unit": orig_unit, "comparator": comparator}
        ranges = part.get("referenceRange") or [{}]
        first = ranges[0] if isinstance(ranges, list) and ranges and isinstance(ranges[0], dict) else {}
        for bound in ("low", "high"):
            qty = first.get(bound)
            if isinstance(qty, dict) and qty.get("value") is not None:
                unit = _unit(qty) if ("code" in qty or "unit" in qty) else orig_unit
                conv = self.conversion(analyte, unit, where, f"{prefix}referenceRange[0].{bound}.unit")
                if conv:
                    row[f"ref_{bound}"] = float(qty["value"]) * conv[0] + conv[1]
        return row

    def quantity_unit(self, qty: dict, analyte: Analyte, where: str, field: str) -> str | None:
        """A Quantity's unit: its UCUM code, else its unit text read as UCUM (a warning)."""
        if qty.get("system") == UCUM and qty.get("code"):
            return qty["code"]
        text = qty.get("unit") or qty.get("code")
        if text is None:
            return None
        ucum = units.normalize_unit(text)
        if ucum != text:  # a spelling UCUM does not write ("mEq/L", "K/uL"): read as its UCUM twin
            self.warn(where, f"{field}.unit", "unit text is not a UCUM code: read as the UCUM unit it names",
                      "unit-text", f"'{text}' as {ucum}")
        return text

    def conversion(self, analyte: Analyte, unit: str | None, where: str, field: str) -> tuple[float, float] | None:
        key = (analyte.code, unit or "1")
        if key not in self.conversions:
            try:
                self.conversions[key] = analyte.conversion(units.normalize_unit(unit))
            except UnitError as exc:
                self.conversions[key] = f"{exc} for {analyte.name} (canonical unit {analyte.unit})"
        conv = self.conversions[key]
        if isinstance(conv, str):
            self.error(where, field, conv, "unit")
            return None
        return conv

    # -- MedicationAdministration, MedicationRequest, MedicationStatement
