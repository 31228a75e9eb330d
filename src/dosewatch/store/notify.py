"""Alerts that reach people: each user's settings, the outbox of deliveries, and one delivery pass.

A pass (``deliver_once``, run every few seconds by the server and by ``dosewatch notify run``):

1. enqueue: every open alert raised after a user saved their settings, of a patient at a site the
   user may see, becomes one ``Delivery`` per channel (e-mail, webhook): critical alerts due at
   once, urgent and warning alerts due at the user's digest hour. The table's unique key (alert,
   user, channel) makes concurrent enqueuers (several workers, a restart) agree on one row;
2. claim: a sender takes due rows with a conditional update (``pending``, or ``sending`` whose lease
   ran out) and commits the claim before sending, so two senders never take the same row;
3. send, outside any transaction (SMTP, webhook POST); a digest is one message per person and
   channel;
4. record: ``sent`` with an audit entry, or back to ``pending`` with exponential back-off, and
   ``failed`` (with an audit entry, listed for the admin) after ``MAX_ATTEMPTS``.

A sender killed between sending and recording leaves a claimed row whose lease runs out; it is sent
again with the same Message-ID / Idempotency-Key, so the receiver can recognise the repeat (the
at-least-once side of an outbox: nothing is lost, and a repeat is the same message).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Callable
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from .audit import Change, append
from .models import Alert, Delivery, NotificationSetting, Patient, Site, Trial, User, UserSite
from .scope import ALL_SITES_ROLES, Refused

IMMEDIATE = ("critical",)
DIGEST = ("urgent", "warning")
MAX_ATTEMPTS = 8
LEASE = dt.timedelta(minutes=2)
_EMAIL = re.compile(r"[^@\s<>,;\"']{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")


@dataclass(frozen=True)
class NotifyConfig:
    """Where messages go out: the SMTP relay, the sender address, the dashboard's address for links,
    and the time zone of the digest hour."""

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "dosewatch@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    starttls: bool = False
    base_url: str = "http://127.0.0.1:8000"
    webhook_timeout: float = 10.0
    tz: str | None = None  # IANA name; None: the server's local time

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "NotifyConfig":
        return cls(smtp_host=env.get("DOSEWATCH_SMTP_HOST") or None,
                   smtp_port=int(env.get("DOSEWATCH_SMTP_PORT") or 25),
                   smtp_from=env.get("DOSEWATCH_SMTP_FROM") or "dosewatch@localhost",
                   smtp_user=env.get("DOSEWATCH_SMTP_USER") or None,
                   smtp_password=env.get("DOSEWATCH_SMTP_PASSWORD") or None,
                   starttls=(env.get("DOSEWATCH_SMTP_STARTTLS") or "").lower() in ("1", "true", "yes"),
                   base_url=(env.get("DOSEWATCH_BASE_URL") or "http://127.0.0.1:8000").rstrip("/"),
                   tz=env.get("DOSEWATCH_TZ") or None)

    def zone(self) -> dt.tzinfo:
        return ZoneInfo(self.tz) if self.tz else dt.datetime.now().astimezone().tzinfo


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------ settings

def settings_of(session: Session, user: User) -> dict[str, Any]:
    row = session.get(NotificationSetting, user.id)
    if row is None:
        return {"email": None, "webhook_url": None, "critical_now": True, "digest_hour": None, "active": False}
    return {"email": row.email, "webhook_url": row.webhook_url, "critical_now": row.critical_now,
            "digest_hour": row.digest_hour, "active": bool(row.email or row.webhook_url)}


def save_settings(session: Session, user: User, *, email: str | None, webhook_url: str | None,
                  critical_now: bool, digest_hour: int | None, now: dt.datetime) -> dict[str, Any]:
    """Save how ``user`` is told (audited). Alerts raised before the first save are not sent."""
    email = (email or "").strip() or None
    webhook_url = (webhook_url or "").strip() or None
    if email is not None and not _EMAIL.fullmatch(email):
        raise Refused("the e-mail address is not one address like name@hospital.org")
    if webhook_url is not None and not re.fullmatch(r"https?://[^\s]{1,1990}", webhook_url):
        raise Refused("the webhook is an http:// or https:// address")
    if digest_hour is not None and not 0 <= digest_hour <= 23:
        raise Refused("the digest hour is 0 to 23")
    row = session.get(NotificationSetting, user.id)
    before = settings_of(session, user) if row is not None else None
    if row is None:
        last = session.scalar(select(func.max(Alert.id))) or 0
        row = NotificationSetting(user_id=user.id, after_alert=last)
        session.add(row)
    row.email, row.webhook_url, row.critical_now, row.digest_hour = email, webhook_url, critical_now, digest_hour
    row.updated_at = iso(now)
    session.flush()
    after = settings_of(session, user)
    append(session, [Change(user.name, "set", "notification_settings", str(user.id), before, after)])
    return after


# ------------------------------------------------------------------------------------- enqueue

def _digest_due(hour: int, raised: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The first time at ``hour`` (local) at or after ``raised``."""
    local = raised.astimezone(zone)
    due = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    return due if due >= local else due + dt.timedelta(days=1)


def enqueue(session: Session, now: dt.datetime, zone: dt.tzinfo) -> int:
    """One Delivery per (open alert, user, channel) not yet there, for every user with settings."""
    added = 0
    for setting, user in session.execute(select(NotificationSetting, User).join(User, User.id == NotificationSetting.user_id)
                                         .where(User.active.is_(True))):
        channels = [c for c, on in (("email", setting.email), ("webhook", setting.webhook_url)) if on]
        severities = (IMMEDIATE if setting.critical_now else ()) + (DIGEST if setting.digest_hour is not None else ())
        if not channels or not severities:
            continue
        query = select(Alert.id, Alert.severity).where(Alert.id > setting.after_alert, Alert.status == "open",
                                                       Alert.severity.in_(severities))
        if user.role not in ALL_SITES_ROLES:
            query = query.where(Alert.site_id.in_(select(UserSite.site_id).where(UserSite.user_id == user.id)))
        for channel in channels:
            sent = select(Delivery.alert_id).where(Delivery.user_id == user.id, Delivery.channel == channel)
            rows = []
            for alert_id, severity in session.execute(query.where(Alert.id.not_in(sent))):
                immediate = severity in IMMEDIATE
                due = now if immediate else _digest_due(setting.digest_hour, now, zone)
                rows.append({"alert_id": alert_id, "user_id": user.id, "channel": channel,
                             "kind": "now" if immediate else "digest", "status": "pending", "due_at": iso(due),
                             "attempts": 0, "created_at": iso(now)})
            added += _insert_new(session, rows)
    return added


def _insert_new(session: Session, rows: list[dict]) -> int:
    """Insert, leaving out rows another enqueuer wrote first (the unique key decides)."""
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    result = session.execute(insert(Delivery).values(rows).on_conflict_do_nothing(
        index_elements=["alert_id", "user_id", "channel"]))
    return result.rowcount or 0


# --------------------------------------------------------------------------------- claim, send

@dataclass
class Message:
    """What one send carries: one alert, or a person's digest on one channel."""

    delivery_ids: list[int]
    user: str
    channel: str
    address: str
    kind: str
    alerts: list[dict[str, Any]]

    @property
    def key(self) -> str:
        """The same for a repeat of this message: Message-ID and Idempotency-Key."""
        return hashlib.sha256(",".join(map(str, sorted(self.delivery_ids))).encode()).hexdigest()[:32]


def claim(session: Session, now: dt.datetime, limit: int = 200) -> list[int]:
    """Take due deliveries for this sender (committed by the caller before anything is sent)."""
    stamp = iso(now)
    due = or_(and_(Delivery.status == "pending", Delivery.due_at <= stamp),
              and_(Delivery.status == "sending", Delivery.lease_until < stamp))
    taken = []
    for row_id in session.scalars(select(Delivery.id).where(due).order_by(Delivery.id).limit(limit)):
        result = session.execute(update(Delivery).where(Delivery.id == row_id, due).values(
            status="sending", lease_until=iso(now + LEASE), attempts=Delivery.attempts + 1))
        if result.rowcount == 1:
            taken.append(row_id)
    return taken


def messages(session: Session, ids: list[int], base_url: str) -> list[Message]:
    """The claimed deliveries as messages: one per immediate alert, one digest per person and channel."""
    if not ids:
        return []
    rows = session.execute(
        select(Delivery, Alert, Patient.patient_id, Site.code, Trial.code, User, NotificationSetting)
        .join(Alert, Alert.id == Delivery.alert_id).join(Patient, Patient.id == Alert.patient_pk)
        .join(Site, Site.id == Alert.site_id).join(Trial, Trial.id == Alert.trial_id)
        .join(User, User.id == Delivery.user_id).join(NotificationSetting, NotificationSetting.user_id == User.id)
        .where(Delivery.id.in_(ids)).order_by(Delivery.id)).all()
    out: list[Message] = []
    digests: dict[tuple[str, str], Message] = {}
    for d, a, patient, site, trial, user, setting in rows:
        address = setting.email if d.channel == "email" else setting.webhook_url
        alert = {"alert_id": a.id, "trial": trial, "patient_id": patient, "site": site, "severity": a.severity,
                 "rule": a.rule, "message": a.message, "date": a.date.isoformat(), "status": a.status,
                 "url": f"{base_url}/trials/{trial}/patients/{patient}"}
        if address is None:  # the user removed the channel since: nothing to send
            out.append(Message([d.id], user.name, d.channel, "", d.kind, []))
        elif d.kind == "now":
            out.append(Message([d.id], user.name, d.channel, address, "now", [alert]))
        else:
            m = digests.setdefault((user.name, d.channel), Message([], user.name, d.channel, address, "digest", []))
            m.delivery_ids.append(d.id)
            m.alerts.append(alert)
    return out + list(digests.values())


def record(session: Session, message: Message, error: str | None, now: dt.datetime) -> None:
    """The outcome of one send: sent (audited), or retried later, or failed for good (audited)."""
    rows = list(session.scalars(select(Delivery).where(Delivery.id.in_(message.delivery_ids))))
    changes = []
    for d in rows:
        if d.status != "sending":  # another sender took it over after our lease ran out
            continue
        if error is None:
            d.status, d.sent_at, d.last_error, d.lease_until = "sent", iso(now), None, None
        elif d.attempts >= MAX_ATTEMPTS:
            d.status, d.last_error, d.lease_until = "failed", error[:2000], None
        else:
            wait = min(30 * 2 ** (d.attempts - 1), 3600)
            d.status, d.due_at, d.last_error, d.lease_until = "pending", iso(now + dt.timedelta(seconds=wait)), \
                error[:2000], None
        if d.status in ("sent", "failed"):
            changes.append(Change("system:notify", "deliver" if d.status == "sent" else "deliver-failed", "delivery",
                                  str(d.id), None, {"alert": d.alert_id, "to": message.user, "channel": d.channel,
                                                    "kind": d.kind, "attempts": d.attempts, "key": message.key},
                                  error))
    if changes:
        append(session, changes)


def deliver_once(store, config: NotifyConfig, send: Callable[[Message, NotifyConfig], None],
                 now: Callable[[], dt.datetime] | None = None) -> dict[str, int]:
    """One pass: enqueue, claim, send each message, record each outcome. Returns counts."""
    clock = now or (lambda: dt.datetime.now(dt.timezone.utc))
    with store.writing() as session:
        queued = enqueue(session, clock(), config.zone())
    with store.writing() as session:
        ids = claim(session, clock())
    with store.reading() as session:
        batch = messages(session, ids, config.base_url)
    counts = {"queued": queued, "sent": 0, "failed": 0}
    for message in batch:
        error = None
        if message.alerts:
            try:
                send(message, config)
            except Exception as exc:  # any failure of the channel: retried with back-off
                error = f"{type(exc).__name__}: {exc}"
        with store.writing() as session:
            record(session, message, error, clock())
        counts["failed" if error else "sent"] += len(message.delivery_ids)
    return counts


def failures(session: Session, limit: int = 500) -> list[dict[str, Any]]:
    """Deliveries that failed for good or are being retried, newest first (the admin's list)."""
    rows = session.execute(select(Delivery, User.name).join(User, User.id == Delivery.user_id)
                           .where(Delivery.status.in_(("failed", "pending")), Delivery.last_error.is_not(None))
                           .order_by(Delivery.id.desc()).limit(limit))
    return [{"id": d.id, "alert_id": d.alert_id, "user": name, "channel": d.channel, "kind": d.kind,
             "status": d.status, "attempts": d.attempts, "next_attempt": d.due_at if d.status == "pending" else None,
             "error": d.last_error} for d, name in rows]
