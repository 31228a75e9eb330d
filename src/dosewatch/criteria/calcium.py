"""Albumin-corrected calcium (Payne RB et al., BMJ 1973;4:643-6), derived on whole columns.

Each total calcium (CA) is paired with the albumin (ALB) drawn closest in time on the same calendar
day (when one before and one after are equally near: the later one); the derived CACORR row has
obs_id "<ca id>+<alb id>" and keeps the CA's time, reported unit and reference range.
The formula is the one printed in the unit system the calcium was reported in (criteria.md decision 2):
mg/dL -> Ca + 0.8 x (4.0 - albumin g/dL); anything else -> SI, Ca mmol/L + 0.02 x (40 - albumin g/L).
The two forms differ by 0.2% in the slope (0.8 mg/dL per g/dL is 0.01996 mmol/L per g/L).
"""
from __future__ import annotations

import polars as pl

from ..analytes import catalog
from ..record import OBSERVATIONS_SCHEMA
from ..units import normalize_unit

# Payne RB, Little AJ, Williams RB, Milner JR. Interpretation of serum calcium in patients with
# abnormal serum proteins. BMJ 1973;4:643-6; the mg/dL form is the one printed under Howard SC et al.,
# NEJM 2011;364:1844-54, Table 1, and cited in shared/reference/criteria.md section 7 and decision 6.
# unit the calcium is reported in -> (slope per albumin unit, reference albumin, albumin unit per g/L)
PAYNE_1973 = {
    "mg/dL": (0.8, 4.0, 0.1),  # Ca mg/dL + 0.8 x (4.0 - albumin g/dL)
    "mmol/L": (0.02, 40.0, 1.0),  # Ca mmol/L + 0.02 x (40 - albumin g/L)
}
SOURCE = "derived: albumin-corrected calcium, Payne BMJ 1973;4:643-6"


def with_corrected_calcium(observations: pl.DataFrame) -> pl.DataFrame:
    """Return ``observations`` with a derived CACORR row for every CA that has an ALB on the same date.

    Measured CACORR rows are kept as they are, and no CACORR is derived for a calcium drawn at the
    same time as a reported CACORR (the lab's own correction stands) or whose derived id already
    exists (so calling this twice adds nothing).
    """
    ca = observations.filter((pl.col("code") == "CA") & pl.col("value").is_not_null())
    alb = observations.filter((pl.col("code") == "ALB") & pl.col("value").is_not_null())
    if ca.is_empty() or alb.is_empty():
        return observations

    # The albumin closest in time on the same day (asof "nearest": equally near -> the later draw).
    pairs = (
        ca.sort("time", maintain_order=True)
        .join_asof(
            alb.select("patient_id", "date", alb_id="obs_id", alb_time="time", alb="value").sort(
                "alb_time", maintain_order=True
            ),
            left_on="time",
            right_on="alb_time",
            by=["patient_id", "date"],
            strategy="nearest",
            check_sortedness=False,
        )
        .filter(pl.col("alb_id").is_not_null())
        .with_columns(new_id=pl.col("obs_id") + "+" + pl.col("alb_id"))
    )

    corrected = observations.filter(pl.col("code") == "CACORR")
    pairs = pairs.join(corrected.select(new_id="obs_id"), on="new_id", how="anti").join(
        corrected.select("patient_id", "time"), on=["patient_id", "time"], how="anti"
    )
    if pairs.is_empty():
        return observations

    # Per reported unit: which printed form applies, and (scale, offset) from that unit to mmol/L.
    rows = []
    for unit in pairs["orig_unit"].unique().to_list():
        form = normalize_unit(unit) if unit and normalize_unit(unit) in PAYNE_1973 else "mmol/L"
        slope, ref_alb, alb_scale = PAYNE_1973[form]
        scale, offset = catalog()["CA"].conversion(normalize_unit(unit)) if unit else (1.0, 0.0)
        rows.append((unit, form == "mg/dL", slope, ref_alb, alb_scale, scale, offset))
    constants = pl.DataFrame(rows, orient="row", schema={
        "orig_unit": pl.String, "in_mgdl": pl.Boolean, "slope": pl.Float64, "ref_alb": pl.Float64,
        "alb_scale": pl.Float64, "scale": pl.Float64, "offset": pl.Float64,
    })
    pairs = pairs.join(constants, on="orig_unit", how="left", nulls_equal=True)
    correction = pl.col("slope") * (pl.col("ref_alb") - pl.col("alb") * pl.col("alb_scale"))
    native = pl.col("orig_value") + correction  # mg/dL form, in mg/dL
    si = pl.col("value") + correction  # SI form, in mmol/L
    in_mgdl = pl.col("in_mgdl") & pl.col("orig_value").is_not_null()
    corrected_si = pl.when(in_mgdl).then(native * pl.col("scale") + pl.col("offset")).otherwise(si)
    # Reported in neither printed unit (e.g. mEq/L): the SI result is given back in that unit.
    orig_value = pl.when(in_mgdl).then(native).otherwise((si - pl.col("offset")) / pl.col("scale"))

    derived = pairs.with_columns(
        obs_id=pl.col("new_id"),
        code=pl.lit("CACORR"),
        value=corrected_si,
        unit=pl.lit(catalog()["CACORR"].unit),
        orig_value=orig_value,
        source=pl.lit(SOURCE + ", from CA ") + pl.col("obs_id") + pl.lit(" and ALB ") + pl.col("alb_id"),
    ).select(list(OBSERVATIONS_SCHEMA))
    # One chunk: every criterion filters this table by code, and filtering a two-chunk table costs ~10x.
    return pl.concat([observations, derived.cast(OBSERVATIONS_SCHEMA)], rechunk=True)
