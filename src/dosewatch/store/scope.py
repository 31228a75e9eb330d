"""Who is asking, and the one function that limits every query to the sites they may see."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select

ALL_SITES_ROLES = ("admin", "statistician", "monitor")


class NotFound(LookupError):
    """Not there, or not visible to this user (the two are not told apart)."""


class Forbidden(PermissionError):
    """The user's role does not allow this."""


class Refused(ValueError):
    """A request that cannot be done as asked (4xx with the message)."""


class Conflict(Refused):
    """The request repeats what is already recorded (409): nothing new is saved."""


@dataclass(frozen=True)
class Viewer:
    """A user as the queries see them. ``site_ids`` is None for roles that see every site."""

    name: str
    role: str
    site_ids: frozenset[int] | None

    @property
    def all_sites(self) -> bool:
        return self.site_ids is None

    def can_see_site(self, site_id: int | None) -> bool:
        return self.site_ids is None or site_id in self.site_ids


SYSTEM = Viewer("system", "admin", None)


def scoped(stmt: Select, model: Any, viewer: Viewer) -> Select:
    """``stmt`` limited to the rows of ``model`` at the viewer's sites. Every patient-linked table
    (and the audit trail) has a ``site_id`` column; rows without a site (users, trials) are only
    for the all-sites roles when they come from the audit trail."""
    if viewer.site_ids is None:
        return stmt
    return stmt.where(model.site_id.in_(sorted(viewer.site_ids)))


def scoped_to_user(stmt: Select, model: Any, user_name: Any) -> Select:
    """``stmt`` limited as ``scoped`` limits it for the active user ``user_name``, with the user's
    role and sites looked up inside the same query (the fast read path: one query, not two). A user
    who is unknown or inactive gets no row. ``user_name`` may be a bound parameter."""
    return stmt.where(_user_sees_site(model.site_id, user_name))


def _user_sees_site(site_id: ColumnElement, user_name: Any) -> ColumnElement[bool]:
    from .models import User, UserSite

    active = (User.name == user_name) & User.active.is_(True)
    all_sites = select(User.id).where(active, User.role.in_(ALL_SITES_ROLES)).exists()
    own_site = (select(UserSite.site_id).join(User, User.id == UserSite.user_id)
                .where(active, UserSite.site_id == site_id).exists())
    return or_(all_sites, own_site)


# What each role may do beyond reading its sites' data.
CAPABILITIES = {
    "import": ("admin", "investigator", "nurse"),
    "acknowledge": ("admin", "investigator", "nurse"),
    "decide_dose": ("admin", "investigator"),
    "decide_cohort": ("admin", "statistician"),
    # electronic signatures: the deciders, and for cohort decisions the investigator (PI, committee chair)
    "sign_cohort": ("admin", "statistician", "investigator"),
    "sign_dose": ("admin", "investigator"),
    "manage": ("admin",),
    "verify_audit": ("admin", "statistician", "monitor"),
}


def require(viewer: Viewer, capability: str) -> None:
    if viewer.role not in CAPABILITIES[capability]:
        raise Forbidden(f"role {viewer.role} may not {capability.replace('_', ' ')}")
