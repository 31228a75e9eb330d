"""How each user reads the pages (``UserPreference``): lab values as reported, in SI units or in
US conventional units."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .audit import Change, append
from .models import User, UserPreference
from .scope import Refused

UNITS = {"reported": "as the lab reported them", "si": "SI units (mmol/L, µmol/L, 10⁹/L)",
         "conventional": "US conventional units (mg/dL, mEq/L, 10³/µL)"}


def units_of(session: Session, user_name: str) -> str:
    pref = session.scalar(select(UserPreference).join(User, User.id == UserPreference.user_id)
                          .where(User.name == user_name))
    return pref.units if pref is not None else "reported"


def save_units(session: Session, user: User, units: str) -> str:
    if units not in UNITS:
        raise Refused(f"units are one of {', '.join(UNITS)}")
    pref = session.get(UserPreference, user.id)
    before = pref.units if pref is not None else "reported"
    if pref is None:
        pref = UserPreference(user_id=user.id)
        session.add(pref)
    pref.units = units
    if before != units:
        append(session, [Change(user.name, "set", "user_preferences", str(user.id), {"units": before},
                                {"units": units})])
    return units
