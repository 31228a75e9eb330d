"""Who is asking, and the one function that limits every query to the sites they may see."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select

ALL_SITES_ROLES = ("admin", "statistician", "monitor")


class NotFound(LookupError):
    """Not there, or not visible to this user (the two are not told apart)."""


class Forbidden(PermissionError):
    """The user's role does not allow this."""


class Refused(ValueError):
    """A request that cannot be done as asked (4xx with the message)."""


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


# What each role may do beyond reading its sites' data.
CAPABILITIES = {
    "import": ("admin", "investigator", "nurse"),
    "acknowledge": ("admin", "investigator", "nurse"),
    "decide_dose": ("admin", "investigator"),
    "decide_cohort": ("admin", "statistician"),
    "manage": ("admin",),
    "verify_audit": ("admin", "statistician", "monitor"),
}


def require(viewer: Viewer, capability: str) -> None:
    if viewer.role not in CAPABILITIES[capability]:
        raise Forbidden(f"role {viewer.role} may not {capability.replace('_', ' ')}")
