"""A protocol checked against what dosewatch knows: its event terms and criteria ids (the event
catalog, ``criteria.terms``), its drugs (``data/drugs.yaml``) and its analyte codes
(``data/analytes.yaml``).

A name dosewatch does not know never matches a record: a misspelt term switches its dose rule off,
a misspelt drug switches off all monitoring. So an unknown name is an error naming the field path
(``dose_rules[0].when[0].term``) and the closest known value.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

from ..analytes import catalog
from ..check import CheckSettings
from ..criteria.terms import CRITERIA_IDS, reported_terms
from ..drugs import drug_catalog
from ..errors import Problem
from .model import Protocol


def closest(value: str, known: Iterable[str]) -> str:
    """' (did you mean 'X'?)' for the closest known value, case-insensitively; '' if none is close."""
    by_lower: dict[str, str] = {}
    for k in known:
        by_lower.setdefault(k.lower(), k)
    hits = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[hits[0]]!r}?)" if hits else ""


def unknown_names(protocol: Protocol, where: str) -> list[Problem]:
    """Every name in ``protocol`` that dosewatch does not know, as problems naming the field path."""
    problems: list[Problem] = []

    def refuse(path: str, message: str) -> None:
        problems.append(Problem(where, path, message, kind="unknown"))

    drugs = drug_catalog().drugs

    def drug(path: str, name: str) -> None:
        if name not in drugs:
            refuse(path, f"unknown drug {name!r}: not in dosewatch's drug catalog{closest(name, drugs)}")

    drug("study_drug.drug", protocol.study_drug.drug)
    for i, p in enumerate(protocol.prophylaxis):
        drug(f"prophylaxis[{i}].drug", p.drug)
        for k, alt in enumerate(p.alternatives):
            drug(f"prophylaxis[{i}].alternatives[{k}]", alt)

    analytes = catalog().analytes
    for i, a in enumerate(protocol.monitoring):
        for k, code in enumerate(a.codes):
            if code not in analytes:
                refuse(f"monitoring[{i}].codes[{k}]", f"unknown analyte code {code!r}: not in dosewatch's analyte "
                       f"catalog{closest(code, analytes)}")

    s = protocol.surveillance
    terms = reported_terms(s.ctcae, s.cytopenias, s.tls)
    for i, rule in enumerate(protocol.dose_rules):
        for k, t in enumerate(rule.when):
            problems += _trigger_problems(where, f"dose_rules[{i}].when[{k}]", t.term, t.criteria, terms, s)
    for i, c in enumerate(protocol.dlt.criteria):
        problems += _trigger_problems(where, f"dlt.criteria[{i}]", c.term, c.criteria, terms, s)
    return problems


def _trigger_problems(where: str, path: str, term: str | None, criteria: str | None,
                      terms: dict[str, frozenset[str]], surveillance) -> list[Problem]:
    """A trigger's criteria id must be one dosewatch reports under this protocol's surveillance, and
    its term one that criteria (or, without criteria, any of them) reports."""
    out: list[Problem] = []
    used = (f"surveillance: ctcae {surveillance.ctcae}, cytopenias {surveillance.cytopenias}, "
            f"tls {surveillance.tls}")
    if criteria is not None:
        if criteria not in CRITERIA_IDS:
            return [Problem(where, f"{path}.criteria", f"unknown criteria id {criteria!r}: dosewatch knows "
                            f"{', '.join(CRITERIA_IDS)}{closest(criteria, CRITERIA_IDS)}", kind="unknown")]
        if criteria not in terms:
            return [Problem(where, f"{path}.criteria", f"no event carries criteria {criteria!r} under this "
                            f"protocol's {used}", kind="unknown")]
    if term is None:
        return out
    pool = terms[criteria] if criteria else frozenset().union(*terms.values())
    if term.lower() in {t.lower() for t in pool}:
        return out
    skipped = {t.lower() for t in CheckSettings().skip_terms}
    if term.lower() in skipped:
        why = "dosewatch does not report it (iwCLL 2018: lymphocytosis is not a toxicity in CLL)"
    elif any(term.lower() in {t.lower() for t in v} for v in reported_terms_everywhere()):
        why = f"not reported{' under ' + criteria if criteria else ''} with this protocol's {used}"
        same = same_quantity(term, pool)
        if same:  # another CTCAE version's name for it: suggest this version's name, not the nearest spelling
            return [Problem(where, f"{path}.term", f"unknown event term {term!r}: {why} (did you mean {same!r}, "
                            "the name of the same lab term here?)", kind="unknown")]
    else:
        why = "not a term dosewatch reports"
    out.append(Problem(where, f"{path}.term", f"unknown event term {term!r}: {why}{closest(term, pool)}",
                       kind="unknown"))
    return out


def same_quantity(term: str, pool: frozenset[str]) -> str | None:
    """The term of ``pool`` that grades the same analytes in the same direction as ``term`` does in some
    CTCAE version ("Platelet count decreased" of v5.0 is "Thrombocytopenia" in v6.0)."""
    from ..criteria.ctcae import CRITERIA as CTCAE
    from ..criteria.ctcae import load_terms

    keys = {(t.codes, t.direction) for v in CTCAE for t in load_terms(v).values() if t.name.lower() == term.lower()}
    lower = {t.lower() for t in pool}
    return next((t.name for v in CTCAE for t in load_terms(v).values()
                 if (t.codes, t.direction) in keys and t.name.lower() in lower), None)


def reported_terms_everywhere() -> list[frozenset[str]]:
    """The terms of every surveillance choice, to tell a term of another CTCAE version from a typo."""
    from ..criteria.ctcae import CRITERIA as CTCAE
    from ..criteria.tls import CRITERIA as TLS

    return [terms for version in CTCAE for cytopenias in (version, "iwcll-2018") for tls in TLS
            for terms in reported_terms(version, cytopenias, tls).values()]
