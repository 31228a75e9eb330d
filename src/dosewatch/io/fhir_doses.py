"""Reading doses: MedicationAdministration (given or not done), and MedicationRequest and
MedicationStatement expanded to daily doses when ``doses_from`` asks for them."""
from __future__ import annotations

import datetime as dt

from ..drugs import drug_catalog
from .fhir_base import DOSE_STATUSES, RXNORM, When, _codings, _concept_text, _relative, _unit, parse_when

MAX_DOSE_DAYS = 366  # a prescription or statement is expanded to daily doses over at most a year


class DoseReading:
    """Methods of the FHIR reader (``fhir._Reader``), kept apart by what they read."""

    def administration(self, res: dict, dose_id: str, where: str) -> None:
        status = res.get("status")
        if status == "entered-in-error":
            self.notice(where, "status", "status entered-in-error: not read", "not-done")
            return
        n0 = self.n_errors
        if status not in DOSE_STATUSES:
            self.error(where, "status", f"unknown status ({', '.join(sorted(DOSE_STATUSES))})", "value", repr(status))
        pid = self.subject(res, where)
        when = self.when(res, where, ("effectiveDateTime", "effectivePeriod.start"), "effective[x]")
        drug, rxnorm = self.drug(res, where)
        dosage = res.get("dosage") or {}
        dose = dosage.get("dose") or {}
        if pid and when and status == "completed" and pid in self.death and when.date > self.death[pid]:
            self.error(where, "effectiveDateTime" if "effectiveDateTime" in res else "effectivePeriod.start",
                       "dose given (status completed) after the patient's death", "date",
                       f"{when.date} after {self.death[pid]}")
        if self.n_errors > n0:
            return
        self.doses.append({
            "patient_id": pid, "dose_id": dose_id, "drug": drug, "rxnorm": rxnorm, **when._asdict(),
            "dose": None if dose.get("value") is None else float(dose["value"]),
            "dose_unit": _unit(dose) if dose else None, "route": _concept_text(dosage.get("route")),
            "status": status, "source": f"{self.name} MedicationAdministration/{dose_id}",
        })

    def prescription(self, res: dict, dose_id: str, where: str) -> None:
        """A MedicationRequest or MedicationStatement read as doses (only with ``--doses-from``): one dose
        a day over its period when taken daily, else one dose at its start. An assumption: a warning."""
        rtype = res["resourceType"]
        status = res.get("status")
        taken = {"active", "completed", "stopped", "intended"} if rtype == "MedicationStatement" else \
            {"active", "completed", "stopped"}
        if status == "not-taken":
            dose_status = "not-done"
        elif status in taken:
            dose_status = "completed"
        else:
            self.notice(where, "status", f"{rtype} with status {status}: not read as doses", "not-done")
            return
        n0 = self.n_errors
        pid = self.subject(res, where)
        dosage = res.get("dosageInstruction") if rtype == "MedicationRequest" else res.get("dosage")
        first = dosage[0] if isinstance(dosage, list) and dosage and isinstance(dosage[0], dict) else {}
        repeat = ((first.get("timing") or {}).get("repeat") or {}) if isinstance(first.get("timing"), dict) else {}
        bounds = repeat.get("boundsPeriod") if isinstance(repeat.get("boundsPeriod"), dict) else {}
        if rtype == "MedicationRequest":
            validity = ((res.get("dispenseRequest") or {}).get("validityPeriod") or {})
            start_fields = ("authoredOn",)
            start = self.when({"start": bounds.get("start"), **res}, where, ("start", *start_fields), "authoredOn")
            end_text = bounds.get("end") or (validity.get("end") if isinstance(validity, dict) else None)
        else:
            start = self.when(res, where, ("effectiveDateTime", "effectivePeriod.start"), "effective[x]")
            period = res.get("effectivePeriod") if isinstance(res.get("effectivePeriod"), dict) else {}
            end_text = bounds.get("end") or period.get("end")
        drug, rxnorm = self.drug(res, where)
        if self.n_errors > n0 or start is None:
            return
        days = 1
        daily = repeat.get("frequency", 1) == 1 and repeat.get("period", 1) == 1 and repeat.get("periodUnit") == "d"
        if end_text and daily:
            try:
                days = (parse_when(end_text).date - start.date).days + 1
            except (ValueError, AttributeError):
                days = 1
        days = max(1, min(days, MAX_DOSE_DAYS))
        rate = first.get("doseAndRate")
        qty = (rate[0].get("doseQuantity") if isinstance(rate, list) and rate and isinstance(rate[0], dict) else None)
        qty = qty if isinstance(qty, dict) else {}
        flag = "request" if rtype == "MedicationRequest" else "statement"
        self.warn(where, "resourceType", f"{rtype} read as doses given (--doses-from {flag}): it records an "
                  "intention or a report, not an administration", "assumed",
                  f"{days} daily dose(s) from {start.date}" if days > 1 else f"one dose on {start.date}")
        for n in range(days):
            date = start.date + dt.timedelta(days=n)
            when = start if n == 0 else When(dt.datetime(date.year, date.month, date.day), date, False, None)
            self.doses.append({
                "patient_id": pid, "dose_id": dose_id if days == 1 else f"{dose_id}-{n + 1}", "drug": drug,
                "rxnorm": rxnorm, **when._asdict(),
                "dose": None if qty.get("value") is None else float(qty["value"]),
                "dose_unit": _unit(qty) if qty else None, "route": _concept_text(first.get("route")),
                "status": dose_status, "source": f"{self.name} {rtype}/{dose_id}",
            })

    def drug(self, res: dict, where: str) -> tuple[str | None, str | None]:
        field, concept = "medicationCodeableConcept", res.get("medicationCodeableConcept")
        if concept is None:
            field, ref = "medicationReference", (res.get("medicationReference") or {}).get("reference", "")
            ref = ref if isinstance(ref, str) else ""
            if ref.startswith("#"):
                contained = res.get("contained")
                med = next((c for c in (contained if isinstance(contained, list) else [])
                            if isinstance(c, dict) and c.get("id") == ref[1:]), None)
                known = med is not None
            else:
                known = ref in self.medications or _relative(ref, "Medication") in self.medications
                med = self.medications.get(ref) or self.medications.get(_relative(ref, "Medication"))
            if med is None:
                self.error(where, field, f"reference {ref!r}: Medication "
                           f"{'is invalid and was not read' if known else 'not found'}", "reference")
                return None, None
            concept = med.get("code")
        codes = [c.get("code") for c in _codings(concept) if c.get("system") == RXNORM and c.get("code")]
        texts = [t for t in [(concept or {}).get("text"), *(c.get("display") for c in _codings(concept))]
                 if isinstance(t, str) and t]
        found = next((d for d in (drug_catalog().find(code=c) for c in codes) if d), None)
        found = found or next((d for d in (drug_catalog().find(text=t) for t in texts) if d), None)
        if found is not None:
            return found.name, codes[0] if codes else (found.rxnorm[0] if found.rxnorm else None)
        if not codes and not texts:
            self.error(where, field, "no drug: neither an RxNorm code nor a name", "value")
            return None, None
        name = texts[0].lower() if texts else f"rxnorm {codes[0]}"
        self.notice(where, field, "drug not in dosewatch's drug catalog: kept by its name (give it as --study-drug "
                    "to make it the study drug)", "not-used", name)
        return name, codes[0] if codes else None

    # -- Condition, AdverseEvent
