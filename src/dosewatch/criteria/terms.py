"""The event catalog: which terms dosewatch reports, under which criteria id.

A protocol's dose rules and DLT criteria match events by term (and optionally criteria id); a term
dosewatch never reports switches a rule off silently, so protocols are checked against this list
(``protocols.known``). Every term comes from the data file of the criterion that reports it.
"""
from __future__ import annotations

from functools import cache

from ..analytes import catalog
from ..check import HEMATOLOGY, CheckSettings
from .ctcae import CRITERIA as CTCAE_VERSIONS
from .ctcae import load_terms
from .iwcll import load_rules as iwcll_rules
from .renal import load_table
from .tls import CRITERIA as TLS_CRITERIA
from .tls import CTLS_TERM, LTLS_TERM
from .tls import load_rules as tls_rules

REPORTED = "reported"  # clinical events as the record reports them (check.reported_events)
FLARE = "ctcae-3.0"
AKI = "kdigo-2012"
IWCLL = "iwcll-2018"

# Hematologic toxicities: the blood counts, and febrile neutropenia (CTCAE v5.0 "Blood and lymphatic
# system disorders"). REVLIMID US PI section 2 and VENCLEXTA US PI section 2.4 (Tables 4-5) give their own
# dose modifications for these and one rule for "other" / "non-hematologic" grade 3-4 toxicities.
HEMATOLOGIC_CODES = ("WBC", "NEUT", "LYM", "PLAT", "HGB", "CD4")
HEMATOLOGIC_EXTRA = ("Febrile neutropenia",)

# Every criteria id an event can carry, with what a protocol chooses it by.
CRITERIA_IDS = (*CTCAE_VERSIONS, IWCLL, *TLS_CRITERIA, AKI, FLARE, REPORTED)


def _ctcae_terms(version: str, codes: set[str] | None = None, without: set[str] | None = None) -> set[str]:
    """Lab terms of a CTCAE version (only those grading ``codes``, or all but those grading ``without``)."""
    out = set()
    for term in load_terms(version).values():
        mine = set(term.codes)
        if codes is not None and not mine & codes:
            continue
        if without is not None and mine and mine <= without:
            continue
        out.add(term.name)
    return out


@cache
def reported_terms(ctcae: str = "ctcae-5.0", cytopenias: str = IWCLL, tls: str = "cairo-bishop-2004"
                   ) -> dict[str, frozenset[str]]:
    """criteria id -> the terms dosewatch reports under these surveillance settings (the protocol's
    ``surveillance``): what a dose rule or DLT criterion can match."""
    heme = set(HEMATOLOGY)
    out: dict[str, set[str]] = {}
    out.setdefault(ctcae, set()).update(_ctcae_terms(ctcae, without=heme if cytopenias != ctcae else None))
    if cytopenias in CTCAE_VERSIONS and cytopenias != ctcae:
        out.setdefault(cytopenias, set()).update(_ctcae_terms(cytopenias, codes=heme))
    if cytopenias == IWCLL:
        out[IWCLL] = {rows[0]["term"] for rows in iwcll_rules().values()}
    # iwCLL 2018: lymphocytosis is not a toxicity in CLL; check.py never reports these.
    for terms in out.values():
        terms.difference_update(CheckSettings().skip_terms)
    rules = tls_rules(tls)
    out[tls] = {LTLS_TERM, CTLS_TERM}
    out.setdefault(rules["ctcae"]["criteria"], set()).add(rules["ctcae"]["term"])
    kdigo = load_table("kdigo-2012.yaml")
    fn = load_table("febrile-neutropenia.yaml")["febrile_neutropenia"]
    for part in (kdigo["aki"], kdigo["ctcae_aki"], fn):
        out.setdefault(part["criteria"], set()).add(part["term"])
    flare = load_table("tumor-flare.yaml")
    out.setdefault(flare["criteria"], set()).add(flare["term"])
    out[REPORTED] = {e.term for e in catalog().events.values()}
    return {k: frozenset(v) for k, v in out.items()}


@cache
def hematologic_terms() -> frozenset[str]:
    """Lower-case terms of hematologic toxicities, in every CTCAE version and iwCLL 2018."""
    out = {t.lower() for t in HEMATOLOGIC_EXTRA}
    for version in CTCAE_VERSIONS:
        out |= {t.lower() for t in _ctcae_terms(version, codes=set(HEMATOLOGIC_CODES))}
    out |= {rows[0]["term"].lower() for rows in iwcll_rules().values()}
    return frozenset(out)


def is_hematologic(term: str) -> bool:
    return term.lower() in hematologic_terms()


# The same syndrome under two names: CTCAE v5.0 "Tumor lysis syndrome" is graded on the laboratory TLS of
# the protocol's rule set (criteria/data/cairo-bishop-2004.yaml, ctcae), so a protocol whose rules name
# laboratory or clinical TLS covers it, and no "other toxicity" rule acts on it a second time.
SAME_SYNDROME = {"tumor lysis syndrome": frozenset({LTLS_TERM.lower(), CTLS_TERM.lower()})}


def syndrome_named(term: str, named: set[str]) -> bool:
    """Whether rules naming these (lower-case) terms cover ``term``'s syndrome under another name."""
    return bool(SAME_SYNDROME.get(term.lower(), frozenset()) & named)
