"""Sending a notification (``store.notify.Message``): e-mail through an SMTP relay (the standard
library's smtplib) or a JSON POST to a webhook (urllib). Both carry the message's key, the same for
a repeat, as Message-ID / Idempotency-Key. Any failure raises; the outbox retries."""
from __future__ import annotations

import json
import smtplib
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate

WHAT_TO_DO = {"critical": "Act now: see the patient and the protocol's rule.",
              "urgent": "Today: review the patient and the rule.",
              "warning": "Review at the next round."}


def send(message, config) -> None:
    if message.channel == "email":
        send_email(message, config)
    elif message.channel == "webhook":
        send_webhook(message, config)
    else:
        raise ValueError(f"unknown channel {message.channel!r}")


def _line(a: dict) -> str:
    return f"{a['severity'].upper()} {a['date']} patient {a['patient_id']} (trial {a['trial']}, site {a['site']}): {a['message']}"


def email_text(message) -> tuple[str, str]:
    """(subject, body) of an e-mail: what, when, what to do, and the link."""
    if message.kind == "now":
        a = message.alerts[0]
        subject = f"[dosewatch] {a['severity'].upper()}: patient {a['patient_id']} ({a['trial']}) - {a['message'][:80]}"
        body = (f"{_line(a)}\n\nRule: {a['rule']}\n{WHAT_TO_DO.get(a['severity'], '')}\n\n{a['url']}\n\n"
                "Acknowledge the alert on the patient's page; this message is sent once.\n")
    else:
        n = len(message.alerts)
        subject = f"[dosewatch] daily digest: {n} alert{'' if n == 1 else 's'}"
        body = "\n\n".join(f"{_line(a)}\n{a['url']}" for a in message.alerts) + "\n"
    return subject, body


def send_email(message, config) -> None:
    if not config.smtp_host:
        raise RuntimeError("no SMTP relay is set (DOSEWATCH_SMTP_HOST)")
    subject, body = email_text(message)
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = config.smtp_from, message.address, subject
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = f"<dosewatch-{message.key}@{config.smtp_from.rsplit('@', 1)[-1]}>"
    mail.set_content(body)
    with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=20) as smtp:
        if config.starttls:
            smtp.starttls()
        if config.smtp_user:
            smtp.login(config.smtp_user, config.smtp_password or "")
        smtp.send_message(mail)


def send_webhook(message, config) -> None:
    body = json.dumps({"source": "dosewatch", "kind": message.kind, "key": message.key, "to": message.user,
                       "alerts": message.alerts}).encode()
    request = urllib.request.Request(message.address, data=body, method="POST", headers={
        "Content-Type": "application/json", "Idempotency-Key": message.key, "User-Agent": "dosewatch"})
    with urllib.request.urlopen(request, timeout=config.webhook_timeout) as response:  # noqa: S310 (http/https checked)
        if not 200 <= response.status < 300:
            raise RuntimeError(f"the webhook answered {response.status}")
