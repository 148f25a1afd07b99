"""E-mail contact points, delivered to a real SMTP receiver on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
from email import policy

import pytest
from aiosmtpd.controller import Controller

from common import db
from tests.helpers import eventually
from tests.notifyreceiver import FAST, store_values
from tests.processes import free_port
from worker.notify.delivery import deliver_once
from worker.notify.guard import AllowList
from worker.notify.mail import SmtpSettings
from worker.notify.senders import open_sender


class Inbox:
    """Accepts every message, unless told to answer RCPT otherwise first."""

    def __init__(self) -> None:
        self.received: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.rcpt_answers: list[str] = []
        self.smtp: SmtpSettings | None = None  # how to reach it, once started

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_answers:
            return self.rcpt_answers.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.received.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted"


@pytest.fixture
def inbox():
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.smtp = SmtpSettings("127.0.0.1", controller.port, starttls=False, sender="alerts@dash.example")
    yield handler
    controller.stop()


@pytest.fixture
async def mail_board(pool, board):
    """The board's rule notifying an e-mail address instead of the webhook."""
    contact = await db.create_contact_point(
        pool, board["ops"].id, "on-call", "email", "oncall@ops.example", None
    )
    await db.set_rule_notifications(pool, board["ops"].id, board["rule"].id, [contact.id], None)
    return board


async def test_firing_and_resolving_are_mailed(pool, mail_board, inbox):
    await store_values(pool, mail_board, 95.0)
    async with open_sender(AllowList(), inbox.smtp) as sender:
        await deliver_once(pool, sender)
        await store_values(pool, mail_board, 10.0)
        await deliver_once(pool, sender)

    assert inbox.envelopes == [("alerts@dash.example", ["oncall@ops.example"])] * 2
    fired, resolved = inbox.received
    assert fired["Subject"].startswith("[FIRING] Ops (ops): temp above 90 (value 95 at ")
    assert resolved["Subject"].startswith("[RESOLVED] Ops (ops): temp above 90 (value 10 at ")
    assert (fired["From"], fired["To"]) == ("alerts@dash.example", "oncall@ops.example")
    assert '"kind": "firing"' in fired.get_content()
    log = await db.list_delivery_attempts(pool, mail_board["ops"].id, 10)
    assert [a.outcome for a in log] == ["delivered", "delivered"]


async def test_a_4xx_answer_is_retried(pool, mail_board, inbox):
    inbox.rcpt_answers = ["451 4.3.0 mailbox busy, try later"]
    await store_values(pool, mail_board, 95.0)
    async with open_sender(AllowList(), inbox.smtp) as sender:
        await deliver_once(pool, sender, FAST)
        await eventually(lambda: deliver_once(pool, sender, FAST), 5, "the retry, after the backoff")

    assert len(inbox.received) == 1
    log = await db.list_delivery_attempts(pool, mail_board["ops"].id, 10)
    assert [(a.outcome, a.detail.split(":")[0]) for a in reversed(log)] == [
        ("retrying", "SMTP 451"),
        ("delivered", "accepted by 127.0.0.1"),
    ]


async def test_a_5xx_answer_is_not_retried(pool, mail_board, inbox):
    inbox.rcpt_answers = ["550 5.1.1 no such user"]
    await store_values(pool, mail_board, 95.0)
    async with open_sender(AllowList(), inbox.smtp) as sender:
        await deliver_once(pool, sender, FAST)
        await asyncio.sleep(0.1)  # a window: past the backoff (0.05 s), a retry would be due
        assert await deliver_once(pool, sender, FAST) == 0

    assert inbox.received == []
    [attempt] = await db.list_delivery_attempts(pool, mail_board["ops"].id, 10)
    assert (attempt.outcome, attempt.detail) == ("failed", "SMTP 550: 5.1.1 no such user")


async def test_an_unreachable_server_is_retried(pool, mail_board):
    down = SmtpSettings("127.0.0.1", free_port())
    await store_values(pool, mail_board, 95.0)
    async with open_sender(AllowList(), down) as sender:
        await deliver_once(pool, sender, FAST)
    [attempt] = await db.list_delivery_attempts(pool, mail_board["ops"].id, 10)
    assert (attempt.outcome, attempt.status) == ("retrying", "pending")


async def test_without_an_smtp_server_the_log_says_so(pool, mail_board):
    await store_values(pool, mail_board, 95.0)
    async with open_sender(AllowList()) as sender:
        await deliver_once(pool, sender)
    [attempt] = await db.list_delivery_attempts(pool, mail_board["ops"].id, 10)
    assert attempt.outcome == "failed" and "--smtp-host" in attempt.detail
