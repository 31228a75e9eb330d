"""Tumor lysis syndrome (TLS): Cairo-Bishop 2004 or Howard 2011, and the CTCAE v5.0 term.

The rules (cut-offs, window, 25% rules, clinical components, CTCAE grade 4/5 triggers) are read from
``criteria/data/<criteria>.yaml``, each value with its source; docs/tls.md gives every reading taken.
Everything is computed on whole columns: each observation is joined to the windows it falls in
(patient and calendar date), flagged against its criterion, and only the few rows that make an event
become Python objects at the end.

A window is study days -3..8 around an anchor (the first dose, and any dose increase a protocol
passes), i.e. from anchor - 3 days to anchor + 7 days: there is no day 0. Overlapping windows are
assessed separately; an event found in two windows with the same onset is reported once, from the
earlier anchor.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from functools import cache
from importlib import resources

import polars as pl

from ..analytes import catalog
from ..errors import UnitError
from ..events import Event, Evidence
from ..record import Cohort, study_day_expr
from ..units import normalize_unit
from ..yaml_load import safe_load
from .calcium import with_corrected_calcium

CRITERIA = ("cairo-bishop-2004", "howard-2011")
SIMULTANEITY = ("calendar-day", "24h")
REL_TOL = 1e-9  # relative tolerance at every cut-off (criteria.md decision 3)
LTLS_TERM = "Laboratory tumor lysis syndrome"
CTLS_TERM = "Clinical tumor lysis syndrome"
OPS = (">=", ">", "<=", "<")
_CALCIUM_LABEL = {
    "CACORR": "albumin-corrected calcium",
    "CAION": "ionized calcium",
    "CA": "total calcium (no albumin or corrected calcium that day)",
}
_KEY = ["patient_id", "anchor"]


# --------------------------------------------------------------------------------------------- rules


@cache
def load_rules(criteria: str) -> dict:
    """The rule set ``criteria`` (cairo-bishop-2004 | howard-2011) from its data file, checked."""
    if criteria not in CRITERIA:
        raise ValueError(f"unknown TLS criteria {criteria!r}: choose one of {', '.join(CRITERIA)}")
    path = f"criteria/data/{criteria}.yaml"
    raw = safe_load(resources.files("dosewatch").joinpath(path).read_text())
    validate_rules(raw, path)
    return raw


def validate_rules(raw: dict, path: str) -> None:
    """Raise ValueError naming the file, the rule and the field for anything detect_tls cannot use."""
    cat = catalog()

    def fail(where: str, message: str) -> None:
        raise ValueError(f"{path}: {where}: {message}")

    for i, crit in enumerate(raw.get("laboratory") or []):
        here = f"laboratory[{i}] ({crit.get('criterion')})"
        for code in crit.get("codes") or fail(here, "codes: missing"):
            if code not in cat:
                fail(here, f"codes: unknown analyte {code!r}")
        for j, cut in enumerate(crit.get("cutoffs") or []):
            where = f"{here} cutoffs[{j}]"
            if cut.get("code") not in crit["codes"]:
                fail(where, f"code: {cut.get('code')!r} is not one of the criterion's codes")
            if cut.get("op") not in OPS:
                fail(where, f"op: {cut.get('op')!r} is not one of {', '.join(OPS)}")
            if cut.get("population") not in ("any", "adult", "child"):
                fail(where, f"population: {cut.get('population')!r} is not any, adult or child")
            if not cut.get("source"):
                fail(where, "source: every cut-off needs its source")
            if cut.get("uln"):
                continue
            if not isinstance(cut.get("value"), (int, float)):
                fail(where, f"value: {cut.get('value')!r} is not a number")
            try:
                cat[cut["code"]].conversion(cut.get("unit") or "")
            except UnitError as exc:
                fail(where, f"unit: {exc}")
        change = crit.get("change")
        if change and (change.get("direction") not in ("increase", "decrease") or not change.get("percent")):
            fail(f"{here} change", "needs direction (increase | decrease) and percent")
    if raw.get("simultaneity") not in ("any", "calendar-day"):
        fail("simultaneity", f"{raw.get('simultaneity')!r} is not any or calendar-day")


# ------------------------------------------------------------------------------------------ helpers


def _meets(x: pl.Expr, op: str | pl.Expr, cut: pl.Expr) -> pl.Expr:
    """x <op> cut with a relative tolerance: a value on the cut-off meets >= and <=, not > and <."""
    tol = cut.abs() * REL_TOL
    op = pl.lit(op) if isinstance(op, str) else op
    return (
        pl.when(op == ">=").then(x >= cut - tol)
        .when(op == ">").then(x > cut + tol)
        .when(op == "<=").then(x <= cut + tol)
        .when(op == "<").then(x < cut - tol)
        .otherwise(None)
        .fill_null(False)
    )


def _num(expr: pl.Expr, digits: int = 4) -> pl.Expr:
    return expr.round(digits).cast(pl.String)


def _calendar_offset(study_day: int) -> int:
    return study_day - 1 if study_day > 0 else study_day


def _windows(day1: dict, anchors: dict | None, window: dict) -> pl.DataFrame:
    """One row per (patient, anchor, calendar date) inside the anchor's window."""
    pairs = {(p, d) for p, d in day1.items() if d is not None}
    for p, dates in (anchors or {}).items():
        pairs |= {(p, d) for d in dates if d is not None}
    schema = {"patient_id": pl.String, "anchor": pl.Date}
    frame = pl.DataFrame(sorted(pairs), schema=schema, orient="row")
    lo, hi = _calendar_offset(window["first_study_day"]), _calendar_offset(window["last_study_day"])
    return (
        frame.join(pl.DataFrame({"offset": list(range(lo, hi + 1))}), how="cross")
        .with_columns(date=pl.col("anchor") + pl.duration(days=pl.col("offset")))
        .with_columns(study_day=study_day_expr("date", "anchor"))
        .drop("offset")
    )


def _prepare(cohort: Cohort, codes: set[str], calcium_corrected: bool = False) -> pl.DataFrame:
    """Observations of ``codes`` (with derived corrected calcium), their unit as reported, normalised."""
    if calcium_corrected:
        obs = cohort.observations.filter(pl.col("code").is_in(codes) & pl.col("value").is_not_null())
    else:
        obs = cohort.observations.filter(pl.col("code").is_in(codes | {"CA", "ALB"}) & pl.col("value").is_not_null())
        obs = with_corrected_calcium(obs).filter(pl.col("code").is_in(codes))
    norm = {u: normalize_unit(u) for u in obs["orig_unit"].drop_nulls().unique().to_list()}
    reported = pl.col("orig_value").is_not_null() & pl.col("orig_unit").is_not_null()
    return obs.with_columns(
        time=pl.coalesce("time", pl.col("date").cast(pl.Datetime("us"))),
        unit_n=pl.when(reported)
        .then(pl.col("orig_unit").replace_strict(norm, default=None, return_dtype=pl.String))
        .otherwise(pl.col("unit")),
        x_native=pl.when(reported).then(pl.col("orig_value")).otherwise(pl.col("value")),
        ev_value=pl.coalesce("orig_value", "value"),
        ev_unit=pl.when(pl.col("orig_value").is_not_null()).then(pl.col("orig_unit")).otherwise(pl.col("unit")),
    )


def _with_baseline(rows: pl.DataFrame, obs: pl.DataFrame, codes: list[str]) -> pl.DataFrame:
    """Attach to each windowed row of ``codes`` the last value of its analyte dated before its anchor."""
    keys = rows.filter(pl.col("code").is_in(codes)).select("patient_id", "anchor", "code").unique()
    latest = keys["anchor"].max() if keys.height else dt.date.min
    right = obs.filter(pl.col("code").is_in(codes) & (pl.col("date") < latest)).select(
        "patient_id",
        "code",
        base_time="time",
        base_id="obs_id",
        base_value="value",
        base_native="x_native",
        base_unit_n="unit_n",
        base_date="date",
        base_ev_value="ev_value",
        base_ev_unit="ev_unit",
    ).sort("base_time", maintain_order=True)  # stable: same-time values keep the record's order
    left = keys.with_columns(anchor_time=pl.col("anchor").cast(pl.Datetime("us"))).sort("anchor_time")
    base = left.join_asof(
        right,
        left_on="anchor_time",
        right_on="base_time",
        by=["patient_id", "code"],
        strategy="backward",
        allow_exact_matches=False,  # a value at midnight of the anchor date is not before it
        check_sortedness=False,
    ).drop("anchor_time")
    return rows.join(base, on=["patient_id", "anchor", "code"], how="left")


def _cutoff_table(rules: dict, present: pl.DataFrame, adult: bool) -> pl.DataFrame:
    """For each (code, reported unit) in the data: the cut-off to apply and the unit it is compared in.

    A value reported in a unit the source prints a cut-off in is compared with that printed number;
    any other unit is compared in the canonical unit (criteria.md decision 2).
    """
    cat, pops = catalog(), ({"any", "adult"} if adult else {"any", "child"})
    rows = []
    for crit in rules["laboratory"]:
        for code in crit["codes"]:
            cands = [c for c in crit.get("cutoffs") or [] if c["code"] == code and c["population"] in pops]
            numeric = [c for c in cands if not c.get("uln")]
            canonical = cat[code].unit
            for unit in present.filter(pl.col("code") == code)["unit_n"].unique().to_list():
                row = {"code": code, "unit_n": unit}
                same = [c for c in numeric if normalize_unit(c["unit"]) == unit]
                canon = [c for c in numeric if normalize_unit(c["unit"]) == canonical]
                if same:
                    c = same[0]
                    row |= {"op": c["op"], "cut": float(c["value"]), "native": True, "cut_unit": c["unit"]}
                elif canon:
                    c = canon[0]
                    row |= {"op": c["op"], "cut": float(c["value"]), "native": False, "cut_unit": canonical}
                elif numeric:
                    c = numeric[0]
                    scale, offset = cat[code].conversion(c["unit"])
                    row |= {"op": c["op"], "cut": c["value"] * scale + offset, "native": False, "cut_unit": canonical}
                elif cands:
                    row |= {"op": cands[0]["op"], "cut": None, "native": False, "cut_unit": None, "uln": True}
                rows.append(row)
    schema = {"code": pl.String, "unit_n": pl.String, "op": pl.String, "cut": pl.Float64,
              "native": pl.Boolean, "cut_unit": pl.String, "uln": pl.Boolean}
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema, orient="row")


# ------------------------------------------------------------------------------------- laboratory


def _abnormal(obs: pl.DataFrame, windows: pl.DataFrame, rules: dict, adult: bool) -> pl.DataFrame:
    """Windowed laboratory rows that meet their criterion, each with a note saying how."""
    labels, crit_of, rank_of, change = {}, {}, {}, {}
    for crit in rules["laboratory"]:
        for rank, code in enumerate(crit["codes"]):
            crit_of[code], rank_of[code] = crit["criterion"], rank
            labels[code] = _CALCIUM_LABEL.get(code, crit["name"]) if crit["criterion"] == "CALCIUM" else crit["name"]
        if crit.get("change"):
            change[crit["criterion"]] = crit["change"]

    labs = obs.filter(pl.col("code").is_in(list(crit_of))).join(windows, on=["patient_id", "date"]).with_columns(
        criterion=pl.col("code").replace_strict(crit_of, return_dtype=pl.String),
        rank=pl.col("code").replace_strict(rank_of, return_dtype=pl.Int32),
        label=pl.col("code").replace_strict(labels, return_dtype=pl.String),
    )
    # Calcium: per patient and day only the first kind present (corrected, ionized, total) is used.
    best = labs.filter(pl.col("criterion") == "CALCIUM").group_by("patient_id", "date").agg(best=pl.col("rank").min())
    labs = labs.join(best, on=["patient_id", "date"], how="left").filter(
        (pl.col("criterion") != "CALCIUM") | (pl.col("rank") == pl.col("best"))
    )
    with_change = [code for code, crit in crit_of.items() if crit in change]
    labs = _with_baseline(labs, obs, with_change)
    cutoffs = _cutoff_table(rules, labs.select("code", "unit_n").unique(), adult)
    labs = labs.join(cutoffs, on=["code", "unit_n"], how="left")

    uln = pl.col("uln").fill_null(False)
    x = pl.when(uln | ~pl.col("native")).then(pl.col("value")).otherwise(pl.col("x_native"))
    cut = pl.when(uln).then(pl.col("ref_high")).otherwise(pl.col("cut"))
    shown_unit = pl.when(uln | ~pl.col("native")).then(pl.col("unit")).otherwise(pl.col("unit_n"))
    abs_note = pl.when(uln).then(
        pl.format("{} {} {} {} ULN {} {}", "label", _num(x), shown_unit, "op", _num(cut), shown_unit)
    ).otherwise(pl.format("{} {} {} {} {} {}", "label", _num(x), shown_unit, "op", _num(cut), "cut_unit"))

    direction = pl.col("criterion").replace_strict({k: v["direction"] for k, v in change.items()}, default=None,
                                                   return_dtype=pl.String)
    pct = pl.col("criterion").replace_strict({k: float(v["percent"]) for k, v in change.items()}, default=None,
                                             return_dtype=pl.Float64)
    after_baseline = pl.col("time") > pl.col("base_time")
    rel_met = (
        pl.when(direction == "increase").then(_meets(pl.col("value"), ">=", pl.col("base_value") * (1 + pct / 100)))
        .when(direction == "decrease").then(_meets(pl.col("value"), "<=", pl.col("base_value") * (1 - pct / 100)))
        .otherwise(False)
        & after_baseline.fill_null(False)
    )
    pct_text = pl.col("criterion").replace_strict({k: str(v["percent"]) for k, v in change.items()}, default=None,
                                                  return_dtype=pl.String)
    rel_note = pl.format(
        "{}: {}% {} rule: {} {} is {}% of baseline {} {} ({} on {})",
        "label", pct_text, direction, _num(pl.col("value")), "unit",
        _num(pl.col("value") / pl.col("base_value") * 100, 1), _num(pl.col("base_value")), "unit",
        "base_id", "base_date",
    )

    flags = labs.with_columns(abs_met=_meets(x, pl.col("op"), cut), rel_met=rel_met)
    flags = flags.filter(pl.col("abs_met") | pl.col("rel_met"))
    flags = _flag_pseudohyperkalemia(flags, obs, rules["pseudohyperkalemia"])
    return flags.with_columns(
        note=pl.concat_str(
            [
                pl.when(pl.col("abs_met")).then(abs_note),
                pl.when(pl.col("rel_met")).then(rel_note),
                pl.col("pseudo_note"),
            ],
            separator="; ",
            ignore_nulls=True,
        )
    )


def _flag_pseudohyperkalemia(flags: pl.DataFrame, obs: pl.DataFrame, rule: dict) -> pl.DataFrame:
    """Note on a potassium drawn on a day the WBC was above the cut-off (criteria.md decision 10)."""
    wbc = (
        obs.filter(pl.col("code") == rule["code"])
        .group_by("patient_id", "date")
        .agg(wbc=pl.col("value").max())
    )
    high = (pl.col("code") == "K") & _meets(pl.col("wbc"), rule["op"], pl.lit(float(rule["value"])))
    return (
        flags.join(wbc, on=["patient_id", "date"], how="left")
        .with_columns(
            pseudo_note=pl.when(high).then(
                pl.format(
                    "possible pseudohyperkalemia: WBC {} x10^9/L the same day ({} {} x10^9/L); counted",
                    _num(pl.col("wbc"), 1), pl.lit(rule["op"]), pl.lit(str(rule["value"])),
                )
            )
        )
        .drop("wbc")
    )


def _first(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """The earliest row of each group (ties: lowest obs_id), without sorting the whole frame."""
    frame = frame.filter(pl.col("time") == pl.col("time").min().over(by))
    return frame.filter(pl.col("obs_id") == pl.col("obs_id").min().over(by))


def _ltls(ab: pl.DataFrame, mode: str, need: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(windows with laboratory TLS and their onset, the abnormal rows that are its evidence)."""
    by_time = ["time", "obs_id"]
    if mode == "any":
        # Cairo-Bishop: each criterion met at least once; onset = the day the n-th criterion is first met.
        first = _first(ab, [*_KEY, "criterion"]).sort(*_KEY, *by_time)
        first = first.with_columns(k=pl.col("time").rank("ordinal").over(_KEY))
        found = (
            first.group_by(_KEY)
            .agg(n=pl.len(), onset=pl.col("date").filter(pl.col("k") == need).first())
            .filter(pl.col("n") >= need)
        )
        evidence = first.join(found.select(_KEY), on=_KEY)
    elif mode == "calendar-day":
        first = _first(ab, [*_KEY, "date", "criterion"])
        found = (
            first.group_by(*_KEY, "date")
            .agg(n=pl.len())
            .filter(pl.col("n") >= need)
            .group_by(_KEY)
            .agg(onset=pl.col("date").min())
        )
        evidence = first.join(found, on=_KEY).filter(pl.col("date") == pl.col("onset")).drop("onset")
    else:  # 24h: for each abnormal value, the latest value of every other criterion within 24 h before it
        left = ab.select(*_KEY, "criterion", "time", "obs_id", "date").sort("time")
        partners = []
        for crit in ab["criterion"].unique().sort().to_list():
            right = ab.filter(pl.col("criterion") == crit).select(*_KEY, p_time="time", p_id="obs_id").sort("p_time")
            left = left.join_asof(
                right, left_on="time", right_on="p_time", by=_KEY, strategy="backward",
                tolerance=dt.timedelta(hours=24), check_sortedness=False,
            ).with_columns(pl.when(pl.col("criterion") != crit).then(pl.col("p_id")).alias(f"p_{crit}"))
            left = left.drop("p_time", "p_id")
            partners.append(f"p_{crit}")
        n_partners = pl.sum_horizontal([pl.col(p).is_not_null().cast(pl.Int32) for p in partners])
        hits = (
            left.filter(n_partners + 1 >= need)
            .sort(*_KEY, *by_time)
            .group_by(_KEY, maintain_order=True)
            .first()
        )
        found = hits.select(*_KEY, onset="date")
        ids = hits.select(*_KEY, pl.concat_list(["obs_id", *partners]).list.drop_nulls().alias("obs_id"))
        ids = ids.explode("obs_id")
        evidence = ab.join(ids, on=[*_KEY, "obs_id"])
    return found, evidence


def _lab_evidence(evidence: pl.DataFrame) -> pl.DataFrame:
    """Evidence rows for the abnormal values, plus the baselines the 25% rules compared against."""
    cols = [*_KEY, "ref", "code", "value", "unit", "date", "time", "note"]
    values = evidence.select(*_KEY, ref="obs_id", code="code", value="ev_value", unit="ev_unit",
                             date="date", time="time", note="note")
    baselines = evidence.filter(pl.col("rel_met")).select(
        *_KEY, ref="base_id", code="code", value="base_ev_value", unit="base_ev_unit", date="base_date",
        time="base_time",
        note=pl.format("baseline for the 25% rule: last value before the anchor dose on {}", "anchor"),
    )
    return pl.concat([values.select(cols), baselines.select(cols)])


# --------------------------------------------------------------------------------------- clinical


def _creatinine(obs: pl.DataFrame, windows: pl.DataFrame, patients: pl.DataFrame, rules: dict,
                adult: bool) -> pl.DataFrame:
    """Windowed creatinine values meeting the clinical criterion, with their grade by ULN multiple."""
    spec = rules["clinical"]["creatinine"]
    creat = obs.filter(pl.col("code") == "CREAT").join(windows, on=["patient_id", "date"])
    creat = _with_baseline(creat, obs, ["CREAT"])
    creat = creat.join(patients.select("patient_id", "sex", "birth_date"), on="patient_id", how="left")

    # ULN: the observation's reference high, else the criterion's default for sex and age.
    defaults = pl.DataFrame(
        [{"d_sex": d["sex"], "d_min": d["min_age"], "d_max": d["max_age"], "d_uln": float(d["uln"])}
         for d in spec.get("default_uln") or []],
        schema={"d_sex": pl.String, "d_min": pl.Int32, "d_max": pl.Int32, "d_uln": pl.Float64}, orient="row",
    )
    birthday_ahead = (pl.col("date").dt.month() * 100 + pl.col("date").dt.day()) < (
        pl.col("birth_date").dt.month() * 100 + pl.col("birth_date").dt.day()
    )
    age = (pl.col("date").dt.year() - pl.col("birth_date").dt.year() - birthday_ahead.cast(pl.Int32)).cast(pl.Int32)
    creat = creat.with_columns(age=pl.coalesce(age, pl.lit(16 if adult else None, dtype=pl.Int32)))
    default = (
        creat.select("obs_id", "anchor", "sex", "age")
        .join(defaults, how="cross")
        .filter(
            ((pl.col("d_sex") == "any") | (pl.col("d_sex") == pl.col("sex")))
            & (pl.col("age") >= pl.col("d_min"))
            & (pl.col("d_max").is_null() | (pl.col("age") < pl.col("d_max")))
        )
        .group_by("obs_id", "anchor")
        .agg(d_uln=pl.col("d_uln").first(), d_sex=pl.col("d_sex").first(), d_min=pl.col("d_min").first())
    )
    creat = creat.join(default, on=["obs_id", "anchor"], how="left").with_columns(
        uln=pl.coalesce("ref_high", "d_uln"),
        uln_note=pl.when(pl.col("ref_high").is_not_null())
        .then(pl.lit("reference range"))
        .otherwise(pl.format("{} default for sex {}, age >= {} [unverified]", pl.lit(rules["name"]), "d_sex", "d_min")),
    )

    value, uln = pl.col("value"), pl.col("uln")
    grade = pl.max_horizontal(
        [pl.when(_meets(value, g["op"], uln * g["multiple"])).then(pl.lit(g["grade"], dtype=pl.Int32))
         for g in spec.get("grades") or []] or [pl.lit(None, dtype=pl.Int32)]
    )
    ratio_note = pl.format("{} x ULN {} umol/L ({})", _num(value / uln, 2), _num(uln, 1), "uln_note")

    if "uln_multiple" in spec:  # Cairo-Bishop: creatinine >= 1.5 x ULN
        rule = spec["uln_multiple"]
        met = _meets(value, rule["op"], uln * rule["value"])
        note = pl.format("creatinine {} {}: {} {} x ULN; {}", _num(pl.col("ev_value")), "ev_unit", pl.lit(rule["op"]),
                         pl.lit(str(rule["value"])), ratio_note)
    else:  # Howard: rise from baseline, or > 1.5 x ULN when there is no baseline
        rise = {normalize_unit(r["unit"]): float(r["value"]) for r in spec["rise"]}
        canonical = catalog()["CREAT"].unit
        native = (pl.col("unit_n") == pl.col("base_unit_n")) & pl.col("unit_n").is_in(list(rise))
        diff = pl.when(native).then(pl.col("x_native") - pl.col("base_native")).otherwise(value - pl.col("base_value"))
        diff_unit = pl.when(native).then(pl.col("unit_n")).otherwise(pl.lit(canonical))
        rise_cut = pl.when(native).then(pl.col("unit_n").replace_strict(rise, default=None, return_dtype=pl.Float64)) \
            .otherwise(pl.lit(rise[canonical]))
        base_rule = spec["no_baseline_uln_multiple"]
        rise_met = _meets(diff, ">=", rise_cut)
        uln_met = pl.col("base_value").is_null() & _meets(value, base_rule["op"], uln * base_rule["value"])
        met = rise_met | uln_met
        note = pl.when(rise_met).then(
            pl.format("creatinine rise {} {} from baseline {} ({} on {}) >= {} {}", _num(diff), diff_unit,
                      _num(pl.col("base_ev_value")), "base_id", "base_date", _num(rise_cut), diff_unit)
        ).otherwise(
            pl.format("no baseline creatinine; {} {}: {} {} x ULN; {}", _num(pl.col("ev_value")), "ev_unit",
                      pl.lit(base_rule["op"]), pl.lit(str(base_rule["value"])), ratio_note)
        )
    return creat.with_columns(met=met, grade=grade, note=note).filter(pl.col("met")).select(
        *_KEY, ref="obs_id", code="code", value="ev_value", unit="ev_unit", date="date", time="time",
        grade="grade", note="note",
    )


def _clinical_events(cohort: Cohort, windows: pl.DataFrame, rules: dict) -> pl.DataFrame:
    """Windowed clinical events (arrhythmia, seizure, death, oliguria, dialysis, ventilation)."""
    lowest = {e["code"]: e.get("lowest_grade") for e in rules["clinical"]["events"]}
    ctcae = rules["ctcae"]
    codes = set(lowest) | set(ctcae["grade_4"]["events"]) | set(ctcae["grade_5"]["events"])
    ev = cohort.events.filter(pl.col("code").is_in(codes)).join(windows, on=["patient_id", "date"])
    floor = pl.col("code").replace_strict(lowest, default=None, return_dtype=pl.Int32)
    grade = pl.max_horizontal(pl.col("grade"), floor)
    return ev.with_columns(
        component=pl.col("code").is_in(list(lowest)),
        grade=grade,
        time=pl.coalesce("time", pl.col("date").cast(pl.Datetime("us"))),
        note=pl.concat_str(
            [pl.coalesce("term", "code"), pl.format("grade {} in the record", "grade")],
            separator="; ",
            ignore_nulls=True,
        ),
    ).select(
        *_KEY, "component", ref="event_id", code="code", value=pl.lit(None, dtype=pl.Float64),
        unit=pl.lit(None, dtype=pl.String), date="date", time="time", grade="grade", note="note",
    )


# ------------------------------------------------------------------------------------------ entry


def detect_tls(
    cohort: Cohort,
    day1: dict[str, dt.date],
    *,
    criteria: str = "cairo-bishop-2004",
    simultaneity: str = "calendar-day",
    anchors: dict[str, list[dt.date]] | None = None,
    adult: bool = True,
    calcium_corrected: bool = False,
) -> list[Event]:
    """Laboratory and clinical TLS by ``criteria``, and the CTCAE v5.0 term "Tumor lysis syndrome".

    ``day1``: first dose of the study drug per patient (the default anchor). ``anchors``: further
    anchor dates per patient (dose increases); each opens its own window of study days -3..8 with its
    own baseline. ``simultaneity`` applies to Howard only (Cairo-Bishop needs none): "calendar-day"
    (default) or "24h". ``adult`` selects the adult or child cut-offs. ``calcium_corrected``: the
    observations already hold the derived corrected calcium (``with_corrected_calcium``).
    """
    rules = load_rules(criteria)
    if simultaneity not in SIMULTANEITY:
        raise ValueError(f"unknown simultaneity {simultaneity!r}: choose one of {', '.join(SIMULTANEITY)}")
    mode = "any" if rules["simultaneity"] == "any" else simultaneity
    windows = _windows(day1, anchors, rules["window"])
    if windows.is_empty():
        return []

    lab_codes = {code for crit in rules["laboratory"] for code in crit["codes"]}
    obs = _prepare(cohort, lab_codes | {"CREAT", rules["pseudohyperkalemia"]["code"]}, calcium_corrected)
    ab = _abnormal(obs, windows, rules, adult)
    if ab.is_empty():
        return []
    ltls, evidence = _ltls(ab, mode, int(rules["minimum_criteria"]))
    if ltls.is_empty():
        return []
    lab_ev = _lab_evidence(evidence)
    met = evidence.group_by(_KEY).agg(criteria_met=pl.col("criterion").unique().sort())
    ltls = ltls.join(met, on=_KEY)

    clinical = _clinical_events(cohort, windows, rules)
    components = pl.concat([
        _creatinine(obs, windows, cohort.patients, rules, adult),
        clinical.filter(pl.col("component")).drop("component"),
    ])
    # Clinical TLS: any component in the same window; onset when both the LTLS and a component exist.
    comp = components.join(ltls.select(*_KEY, "onset"), on=_KEY)
    graded = rules["clinical"].get("grading") != "none"
    ctls = comp.group_by(_KEY).agg(
        first=pl.col("date").min(), grade=pl.col("grade").max(), onset=pl.col("onset").first()
    ).with_columns(onset=pl.max_horizontal("onset", "first"))
    # Its evidence: per component code, the first record and the worst one.
    ctls_ev = pl.concat([
        comp.sort("time", "ref").group_by(*_KEY, "code", maintain_order=True).first(),
        comp.sort("grade", "value", "time", descending=[True, True, False], nulls_last=True)
        .group_by(*_KEY, "code", maintain_order=True).first(),
    ]).drop("onset")

    # CTCAE: grade 3 when TLS is present; 4 / 5 for the triggers on or after its onset, inside the window.
    ctcae = rules["ctcae"]
    esc = pl.concat([
        comp.filter(pl.col("grade") >= ctcae["grade_4"]["component_grade"]).drop("onset"),
        clinical.filter(pl.col("code").is_in(ctcae["grade_4"]["events"])).drop("component")
        .with_columns(grade=pl.lit(4, dtype=pl.Int32)),
        clinical.filter(pl.col("code").is_in(ctcae["grade_5"]["events"])).drop("component")
        .with_columns(grade=pl.lit(5, dtype=pl.Int32)),
    ]).join(ltls.select(*_KEY, "onset"), on=_KEY).filter(pl.col("date") >= pl.col("onset"))
    esc = esc.with_columns(grade=pl.min_horizontal("grade", pl.lit(5, dtype=pl.Int32))).drop("onset")
    present = int(ctcae["present_grade"]["grade"])
    tls_grade = esc.group_by(_KEY).agg(worst=pl.col("grade").max())

    return _assemble(rules, mode, ltls, lab_ev, ctls, ctls_ev, graded, tls_grade, esc, present)


def _assemble(rules, mode, ltls, lab_ev, ctls, ctls_ev, graded, tls_grade, esc, present) -> list[Event]:
    """Turn the (few) event rows into Event objects, one per window, deduplicated across windows."""
    cols = ["ref", "code", "value", "unit", "date", "time", "note"]

    def by_window(frame: pl.DataFrame) -> dict:
        out = defaultdict(list)
        for r in frame.select(*_KEY, *cols).sort(*_KEY, "time", "ref").iter_rows(named=True):
            out[(r["patient_id"], r["anchor"])].append(
                Evidence(ref=r["ref"], code=r["code"], value=r["value"], unit=r["unit"], date=r["date"], note=r["note"])
            )
        return out

    def merged(*lists) -> tuple[Evidence, ...]:
        seen, out = set(), []
        for e in sorted((e for lst in lists for e in lst), key=lambda e: (e.date, e.ref)):
            if e.ref not in seen:
                seen.add(e.ref)
                out.append(e)
        return tuple(out)

    lab, clin, esc_ev = by_window(lab_ev), by_window(ctls_ev), by_window(esc)
    clin_rows = {(r["patient_id"], r["anchor"]): r for r in ctls.iter_rows(named=True)}
    worst = {(r["patient_id"], r["anchor"]): r["worst"] for r in tls_grade.iter_rows(named=True)}
    first_day, last_day = rules["window"]["first_study_day"], rules["window"]["last_study_day"]

    events: dict[tuple, Event] = {}
    for r in ltls.sort(*_KEY).iter_rows(named=True):
        key = (r["patient_id"], r["anchor"])
        anchor = r["anchor"]
        detail = {
            "anchor": anchor.isoformat(),
            "window": [
                (anchor + dt.timedelta(days=_calendar_offset(first_day))).isoformat(),
                (anchor + dt.timedelta(days=_calendar_offset(last_day))).isoformat(),
            ],
            "criteria_met": r["criteria_met"],
            "simultaneity": mode,
            "source": rules["source"],
        }
        found = [Event(key[0], LTLS_TERM, rules["id"], None, r["onset"], merged(lab[key]), "LTLS", detail)]
        if key in clin_rows:
            c = clin_rows[key]
            found.append(Event(key[0], CTLS_TERM, rules["id"], c["grade"] if graded else None, c["onset"],
                               merged(lab[key], clin[key]), "CTLS", detail))
        grade = max(present, worst.get(key) or present)
        found.append(Event(key[0], rules["ctcae"]["term"], rules["ctcae"]["criteria"], grade, r["onset"],
                           merged(lab[key], esc_ev[key]), "TLS", {**detail, "defined_by": rules["id"]}))
        for e in found:  # windows are visited in anchor order: the earlier anchor wins
            events.setdefault((e.patient_id, e.criteria, e.term, e.onset), e)
    order = {LTLS_TERM: 0, CTLS_TERM: 1}
    return sorted(events.values(), key=lambda e: (e.patient_id, e.onset, order.get(e.term, 2)))
