"""The bodies of notifications: the webhook JSON, Slack's `text`/`blocks`, the e-mail text."""

from __future__ import annotations

import hashlib
import hmac
import json
from email.message import EmailMessage
from typing import Any

from common import db

# The webhook's signature header: "sha256=" and the hex HMAC-SHA256 of the raw body.
SIGNATURE_HEADER = "X-Dashboard-Signature"
# The message's id: the same on every attempt, so a receiver can drop repeats.
DELIVERY_HEADER = "X-Dashboard-Delivery"


def webhook_body(delivery: db.Delivery) -> dict[str, Any]:
    """The generic webhook's JSON (README, "Threshold alerts")."""
    alert = None
    if delivery.rule_id is not None:
        alert = {
            "rule_id": delivery.rule_id,
            "metric": delivery.metric_name,
            "condition": delivery.condition,
            "threshold": delivery.threshold,
            "value": delivery.value,
            "at": delivery.at.isoformat() if delivery.at else None,
        }
    return {
        "delivery_id": delivery.id,
        "kind": delivery.kind,
        "dashboard": {
            "id": delivery.dashboard_id,
            "slug": delivery.dashboard_slug,
            "name": delivery.dashboard_name,
        },
        "alert": alert,
    }


def summary(delivery: db.Delivery) -> str:
    """One line saying what happened, for Slack and e-mail."""
    where = f"{delivery.dashboard_name} ({delivery.dashboard_slug})"
    if delivery.rule_id is None:
        return f"Test notification from dashboard {where} to contact point {delivery.contact_name!r}"
    label = {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED"}[delivery.kind]
    return (
        f"[{label}] {where}: {delivery.metric_name} {delivery.condition} {delivery.threshold:g}"
        f" (value {delivery.value:g} at {delivery.at.isoformat() if delivery.at else '?'})"
    )


def slack_body(delivery: db.Delivery) -> dict[str, Any]:
    """A Slack incoming webhook's message: `text` (notifications, fallback) and one block."""
    # Slack reads <...> as links and mentions: names are editors' text, escaped as Slack asks.
    text = summary(delivery).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, raw: bytes) -> str:
    """The SIGNATURE_HEADER value: what a receiver recomputes over the bytes it received."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def email_message(delivery: db.Delivery, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = delivery.target
    message["Subject"] = summary(delivery)
    message[DELIVERY_HEADER] = str(delivery.id)
    message.set_content(summary(delivery) + "\n\n" + json.dumps(webhook_body(delivery), indent=2) + "\n")
    return message
