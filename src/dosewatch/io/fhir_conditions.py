"""Reading Conditions and AdverseEvents: the event term from its codes, its grade and dates."""
from __future__ import annotations

from ..analytes import catalog
from .fhir_base import GRADE_URL, IMPUTED_URL, SEVERITY_GRADE, SEVERITY_WORD, SNOMED, _codings, _concept_text, _extension, parse_when


class ConditionReading:
    """Methods of the FHIR reader (``fhir._Reader``), kept apart by what they read."""

    def condition(self, res: dict, event_id: str, where: str) -> None:
        rtype = res["resourceType"]
        if any(c.get("code") == "entered-in-error" for c in _codings(res.get("verificationStatus"))):
            self.notice(where, "verificationStatus", "entered-in-error: not read", "not-done")
            return
        if res.get("actuality") == "potential":
            self.notice(where, "actuality", "potential adverse event: not read", "not-done")
            return
        n0 = self.n_errors
        code_field = "code" if rtype == "Condition" else "event"
        concept = res.get(code_field)
        kind = next((catalog().event_by_snomed[c["code"]] for c in _codings(concept)
                     if c.get("system") == SNOMED and c.get("code") in catalog().event_by_snomed), None)
        if kind is None:
            texts = [(concept or {}).get("text"), *(c.get("display") for c in _codings(concept))]
            kind = next((k for k in map(self.cat.event_for_text, [t for t in texts if isinstance(t, str)]) if k), None)
        text = _concept_text(concept)
        # the source's codes beyond the event catalog's own SNOMED CT code (which ``code`` already says)
        own = (SNOMED, kind.snomed[0]) if kind is not None and kind.snomed else None
        codes = " ".join(f"{c.get('system')}|{c.get('code')}" for c in _codings(concept)
                         if isinstance(c.get("system"), str) and isinstance(c.get("code"), str)
                         and (c.get("system"), c.get("code")) != own) or None
        if kind is None and not text and not codes:
            self.error(where, code_field, "no event: neither a code nor a text", "value")
        pid = self.subject(res, where)
        fields = (("onsetDateTime", "onsetPeriod.start", "recordedDate") if rtype == "Condition"
                  else ("date", "detected", "recordedDate"))
        when = self.when(res, where, fields, fields[0].replace("DateTime", "[x]"))
        end = None
        if res.get("abatementDateTime"):
            try:
                end = parse_when(res["abatementDateTime"]).date
            except (ValueError, AttributeError) as exc:
                self.error(where, "abatementDateTime", str(exc), "date")
        grade, grade_source = self.grade(res, where)
        if self.n_errors > n0:
            return
        if kind is None:
            self.notice(where, code_field, "event not in dosewatch's event catalog: kept as a reported event (no "
                        "criterion acts on it)", "not-used", text or codes or "")
        self.events.append({
            "patient_id": pid, "event_id": event_id, "code": kind.code if kind else None,
            "term": text or (kind.term if kind else codes), **when._asdict(), "end_date": end, "grade": grade,
            "source": f"{self.name} {rtype}/{event_id}", "codes": codes, "grade_source": grade_source,
            "imputed": imputed if isinstance(imputed := _extension(res, IMPUTED_URL), str) else None,
        })

    def grade(self, res: dict, where: str) -> tuple[int | None, str | None]:
        grade = _extension(res, GRADE_URL)
        if grade is not None:
            if isinstance(grade, bool) or not isinstance(grade, int) or not 1 <= grade <= 5:
                self.error(where, f"extension({GRADE_URL})", "grade is not an integer 1-5", "value", repr(grade))
                return None, None
            return grade, "toxicity grade"
        severity = res.get("severity")
        for key in [c.get("code") for c in _codings(severity)] + [(severity or {}).get("text")]:
            if isinstance(key, str) and key.lower() in SEVERITY_GRADE:
                grade = SEVERITY_GRADE[key.lower()]
                return grade, f"severity {SEVERITY_WORD[grade]}"
        return None, None
