"""Alerts that reach people: a real SMTP server on loopback (aiosmtpd) and a webhook receiver; each
alert once per person and channel, only at sites the person may see, a digest at its hour, retries
with back-off, failures listed for the admin and audited, and a sender killed mid-delivery that
loses nothing."""
from __future__ import annotations

import datetime as dt
import email
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import func, select
from test_server_support import body, demo_app, demo_template, free_port, login, small_bundle  # noqa: F401

UTC = dt.timezone.utc


class Inbox:
    """An SMTP server on loopback that keeps what it receives (and can be told to refuse)."""

    def __init__(self, delay: float = 0.0):
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.Message] = []
        self.delay = delay
        inbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                import asyncio

                await asyncio.sleep(inbox.delay)
                inbox.messages.append(email.message_from_bytes(envelope.content))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    def to(self, address: str) -> list:
        return [m for m in self.messages if m["To"] == address]


class Hook:
    """A webhook receiver on loopback."""

    def __init__(self):
        self.posts: list[tuple[dict, dict]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.posts.append((dict(self.headers), data))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()


def renamed(bundle: dict, old: str, new: str) -> dict:
    return json.loads(json.dumps(bundle).replace(f'"{old}', f'"{new}').replace(f"/{old}", f"/{new}"))


@pytest.fixture
def demo(demo_app):
    """The API on a fresh copy of the demo database: (client, store, database file)."""
    from fastapi.testclient import TestClient

    store = demo_app.state.store
    with TestClient(demo_app) as client:
        yield client, store, store.engine.url.database


def config(inbox=None, **kw):
    from dosewatch.store.notify import NotifyConfig

    return NotifyConfig(smtp_host="127.0.0.1" if inbox else None, smtp_port=inbox.port if inbox else 25,
                        smtp_from="dosewatch@trial.example", base_url="https://dw.example", tz="UTC", **kw)


def import_seed1_as(client, new_id: str, user: str = "nurse"):
    """seed-1's records (critical alerts on 8 and 10 March) as a new patient at OSU: the import
    raises its alerts through the monitor."""
    r = client.post("/api/trials/demo/fhir", content=body(renamed(small_bundle(("seed-1",), "2007-03-12"), "seed-1",
                                                                  new_id)),
                    headers={**login(client, user), "Content-Type": "application/fhir+json"}, params={"site": "OSU"})
    assert r.status_code == 200, r.text


def test_a_critical_alert_reaches_the_people_of_its_site_once(demo):
    from dosewatch.channels import send
    from dosewatch.store.models import Alert, AuditEntry, Patient
    from dosewatch.store.notify import deliver_once

    client, store, _ = demo
    with Inbox() as inbox, Hook() as hook:
        for user, settings in (("nurse", {"email": "nurse@osu.example", "webhook_url": hook.url}),
                               ("nurse-north", {"email": "north@north.example"}),
                               ("investigator", {"email": "pi@osu.example", "critical_now": False})):
            r = client.put("/api/me/notifications", json=settings, headers=login(client, user))
            assert r.status_code == 200 and r.json()["active"] is True
        cfg = config(inbox)
        assert deliver_once(store, cfg, send)["queued"] == 0  # alerts from before the settings are not sent
        import_seed1_as(client, "seed-9")
        counts = deliver_once(store, cfg, send)
        with store.reading() as session:
            n_critical = session.scalar(select(func.count()).select_from(Alert).join(Patient).where(
                Patient.patient_id == "seed-9", Alert.severity == "critical", Alert.status == "open"))
        assert n_critical >= 1 and counts["sent"] == 2 * n_critical  # nurse: e-mail and webhook
        mails = inbox.to("nurse@osu.example")
        assert len(mails) == n_critical and all("CRITICAL" in m["Subject"] and "seed-9" in m["Subject"] for m in mails)
        assert "https://dw.example/trials/demo/patients/seed-9" in mails[0].get_payload(decode=True).decode()
        assert inbox.to("north@north.example") == []  # NORTH's nurse cannot see OSU's patients
        assert inbox.to("pi@osu.example") == []  # the investigator asked for no immediate alerts
        assert len(hook.posts) == n_critical
        headers, data = hook.posts[0]
        assert data["alerts"][0]["patient_id"] == "seed-9" and headers["Idempotency-Key"] == data["key"]
        assert deliver_once(store, cfg, send) == {"queued": 0, "sent": 0, "failed": 0}  # nothing twice
        assert len(inbox.messages) == n_critical
        with store.reading() as session:
            audited = session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "deliver"))
            assert audited == 2 * n_critical
            assert session.scalar(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.entity == "notification_settings")) == 3


def test_urgent_alerts_wait_for_the_digest_hour_and_come_as_one_message(demo):
    from dosewatch.channels import send
    from dosewatch.store.notify import deliver_once

    client, store, _ = demo
    with Inbox() as inbox:
        r = client.put("/api/me/notifications", json={"email": "nurse@osu.example", "critical_now": False,
                                                      "digest_hour": 7}, headers=login(client, "nurse"))
        assert r.status_code == 200
        import_seed1_as(client, "seed-8")
        evening = dt.datetime(2030, 1, 1, 18, 0, tzinfo=UTC)
        assert deliver_once(store, config(inbox), send, now=lambda: evening)["sent"] == 0
        assert deliver_once(store, config(inbox), send, now=lambda: evening + dt.timedelta(hours=12, minutes=59))[
            "sent"] == 0
        morning = deliver_once(store, config(inbox), send, now=lambda: evening + dt.timedelta(hours=13))
        assert morning["sent"] >= 2 and len(inbox.messages) == 1
        digest = inbox.messages[0]
        text = digest.get_payload(decode=True).decode()
        lines = [x for x in text.splitlines() if x.startswith(("URGENT ", "WARNING ", "CRITICAL "))]
        assert "daily digest" in digest["Subject"] and len(lines) == morning["sent"]
        assert not any(x.startswith("CRITICAL") for x in lines) and any(x.startswith("URGENT") for x in lines)


def test_a_relay_that_is_down_is_retried_with_back_off_then_listed_for_the_admin(demo):
    from dosewatch.channels import send
    from dosewatch.store.models import AuditEntry, Delivery
    from dosewatch.store.notify import MAX_ATTEMPTS, deliver_once

    client, store, _ = demo
    client.put("/api/me/notifications", json={"email": "nurse@osu.example"}, headers=login(client, "nurse"))
    import_seed1_as(client, "seed-7")
    down = config(None)  # no relay: every e-mail fails
    t = dt.datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    first = deliver_once(store, down, send, now=lambda: t)
    assert first["failed"] >= 1 and first["sent"] == 0
    with store.reading() as session:
        waits = [dt.datetime.fromisoformat(d.due_at) - t for d in session.scalars(select(Delivery))]
    assert waits and all(w == dt.timedelta(seconds=30) for w in waits)  # 30 s, then 60, 120, ... up to an hour
    assert deliver_once(store, down, send, now=lambda: t + dt.timedelta(seconds=29))["failed"] == 0  # not yet due
    problems = client.get("/api/notifications/problems", headers=login(client, "admin")).json()
    assert problems and problems[0]["status"] == "pending" and "SMTP" in problems[0]["error"]
    assert client.get("/api/notifications/problems", headers=login(client, "nurse")).status_code == 403
    clock = t
    for _ in range(MAX_ATTEMPTS):
        clock += dt.timedelta(hours=2)
        deliver_once(store, down, send, now=lambda: clock)
    with store.reading() as session:
        assert {d.status for d in session.scalars(select(Delivery))} == {"failed"}
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "deliver-failed")) == first["failed"]
    assert {p["status"] for p in client.get("/api/notifications/problems", headers=login(client, "admin")).json()} \
        == {"failed"}


@pytest.mark.parametrize("settings, said", [
    ({"email": "not an address"}, "e-mail"), ({"email": "a@b.example\nBcc: x@y.example"}, "e-mail"),
    ({"webhook_url": "file:///etc/passwd"}, "webhook"), ({"digest_hour": 24}, "less than or equal"),
])
def test_bad_settings_are_refused(demo, settings, said):
    client, _, _ = demo
    r = client.put("/api/me/notifications", json=settings, headers=login(client, "nurse"))
    assert r.status_code in (400, 422) and said in r.text


def test_a_sender_killed_mid_delivery_loses_nothing(demo, tmp_path):
    """`dosewatch notify run` against a slow relay, killed with SIGKILL while it sends, then run
    again: every alert reaches the nurse, and a message repeated because its sender died before
    recording it carries the same Message-ID (the receiver can tell; at most the one in flight)."""
    from dosewatch.store.models import Delivery

    client, store, path = demo
    client.put("/api/me/notifications", json={"email": "nurse@osu.example"}, headers=login(client, "nurse"))
    for i in range(3):
        import_seed1_as(client, f"seed-k{i}")
    dosewatch = os.path.join(os.path.dirname(sys.executable), "dosewatch")
    env = {**os.environ, "DOSEWATCH_SMTP_HOST": "127.0.0.1", "DOSEWATCH_TZ": "UTC"}
    with Inbox(delay=0.7) as inbox:
        env["DOSEWATCH_SMTP_PORT"] = str(inbox.port)
        proc = subprocess.Popen([dosewatch, "notify", "run", "--db", f"sqlite:///{path}", "--every", "1"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not inbox.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # inside the next message's SMTP transaction
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = len(inbox.messages)
        with store.reading() as session:
            expected = session.scalar(select(func.count()).select_from(Delivery))
        assert 0 < killed_at < expected
        later = dt.datetime.now(UTC) + dt.timedelta(minutes=5)  # the dead sender's lease has run out
        from dosewatch.channels import send
        from dosewatch.store.notify import deliver_once

        deliver_once(store, config(inbox), send, now=lambda: later)
        ids = [m["Message-ID"] for m in inbox.messages]
    assert len(set(ids)) == expected  # nothing lost
    assert len(ids) - len(set(ids)) <= 1  # at most the message in flight, repeated with its own Message-ID
    with store.reading() as session:
        assert {d.status for d in session.scalars(select(Delivery))} == {"sent"}


def test_two_senders_at_once_send_each_alert_once(demo):
    """Two passes racing (two workers): the unique key and the claim give each message one sender."""
    from dosewatch.channels import send
    from dosewatch.store.notify import deliver_once

    client, store, _ = demo
    client.put("/api/me/notifications", json={"email": "nurse@osu.example"}, headers=login(client, "nurse"))
    for i in range(2):
        import_seed1_as(client, f"seed-r{i}")
    with Inbox(delay=0.05) as inbox:
        cfg = config(inbox)
        threads = [threading.Thread(target=deliver_once, args=(store, cfg, send)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deliver_once(store, cfg, send)
        ids = [m["Message-ID"] for m in inbox.messages]
    assert ids and len(ids) == len(set(ids))
