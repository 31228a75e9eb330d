"""How each user is told of alerts (``store.notify``): their own settings, and for the admin the
deliveries that fail."""
from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from ...store.models import User
from ...store.notify import failures, save_settings, settings_of
from ...store.scope import require
from ..deps import CurrentViewer, StoreDep

router = APIRouter(tags=["notifications"])


class NotificationSettingsIn(BaseModel):
    email: str | None = Field(None, max_length=254, description="critical alerts at once, the digest daily")
    webhook_url: str | None = Field(None, max_length=2000, description="JSON POST of the same (paging, chat)")
    critical_now: bool = Field(True, description="critical alerts at once")
    digest_hour: int | None = Field(None, ge=0, le=23, description="urgent and warning alerts in a daily digest "
                                                                   "at this hour (server time); none: no digest")


class NotificationSettingsOut(NotificationSettingsIn):
    active: bool = Field(description="an address or a webhook is set")


class DeliveryProblemOut(BaseModel):
    id: int
    alert_id: int
    user: str
    channel: str
    kind: str
    status: str = Field(description="failed (gave up) or pending (to be retried)")
    attempts: int
    next_attempt: str | None
    error: str | None


def _user(session, viewer) -> User:
    return session.scalar(select(User).where(User.name == viewer.name))


@router.get("/me/notifications")
def my_settings(viewer: CurrentViewer, store: StoreDep) -> NotificationSettingsOut:
    with store.reading() as session:
        return NotificationSettingsOut(**settings_of(session, _user(session, viewer)))


@router.put("/me/notifications")
def set_my_settings(body: NotificationSettingsIn, viewer: CurrentViewer, store: StoreDep) -> NotificationSettingsOut:
    """Only alerts raised after the first save are sent; every change is audited."""
    with store.writing() as session:
        return NotificationSettingsOut(**save_settings(
            session, _user(session, viewer), email=body.email, webhook_url=body.webhook_url,
            critical_now=body.critical_now, digest_hour=body.digest_hour, now=dt.datetime.now(dt.timezone.utc)))


@router.get("/notifications/problems")
def delivery_problems(viewer: CurrentViewer, store: StoreDep) -> list[DeliveryProblemOut]:
    """Deliveries that failed for good or wait for a retry, newest first (admin)."""
    require(viewer, "manage")
    with store.reading() as session:
        return [DeliveryProblemOut(**row) for row in failures(session)]
