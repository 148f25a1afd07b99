"""Alert notifications: queued with the transition, delivered by the worker's loop (issue 16)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest

from common import db
from tests.helpers import eventually
from tests.notifyreceiver import FAST, SECRET, store_values
from tests.processes import child
from worker.notify.delivery import Backoff, deliver_once
from worker.notify.guard import AllowList
from worker.notify.senders import open_sender
from worker.retention import delete_expired_notifications

LOOPBACK = AllowList.parse(["127.0.0.1/32"])


def _bodies(hook) -> list[dict]:
    return [json.loads(item.body) for item in hook.received]


async def test_firing_and_resolving_are_sent_signed(pool, board, hook):
    await store_values(pool, board, 95.0)
    async with open_sender(LOOPBACK) as sender:
        assert await deliver_once(pool, sender) == 1
        await store_values(pool, board, 50.0)
        assert await deliver_once(pool, sender) == 1
        assert await deliver_once(pool, sender) == 0

    assert [(b["kind"], b["alert"]["value"]) for b in _bodies(hook)] == [("firing", 95.0), ("resolved", 50.0)]
    first = hook.received[0]
    assert _bodies(hook)[0]["dashboard"]["slug"] == "ops"
    assert _bodies(hook)[0]["alert"]["metric"] == "temp"
    # The receiver recomputes the signature over the bytes it got, with the secret it was shown.
    expected = "sha256=" + hmac.new(SECRET.encode(), first.body, hashlib.sha256).hexdigest()
    assert first.headers["X-Dashboard-Signature"] == expected
    assert first.headers["X-Dashboard-Delivery"] == str(_bodies(hook)[0]["delivery_id"])
    log = await db.list_delivery_attempts(pool, board["ops"].id, 10)
    assert [(a.kind, a.outcome) for a in log] == [("resolved", "delivered"), ("firing", "delivered")]


async def test_a_wrong_secret_does_not_verify(pool, board, hook):
    await store_values(pool, board, 95.0)
    async with open_sender(LOOPBACK) as sender:
        await deliver_once(pool, sender)
    forged = "sha256=" + hmac.new(b"guess", hook.received[0].body, hashlib.sha256).hexdigest()
    assert hook.received[0].headers["X-Dashboard-Signature"] != forged


async def test_a_rule_still_firing_repeats_until_it_resolves(pool, board, hook):
    await db.set_rule_notifications(pool, board["ops"].id, board["rule"].id, [board["contact"].id], 1)
    await store_values(pool, board, 95.0)
    async with open_sender(LOOPBACK) as sender:
        await deliver_once(pool, sender)
        assert await deliver_once(pool, sender) == 0  # not yet due
        assert await eventually(lambda: deliver_once(pool, sender), 5, "the repeat, a second later") == 1
        await store_values(pool, board, 10.0)
        await deliver_once(pool, sender)
        # Resolved: no more repeats, even once its repeat time has passed.
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(
                "UPDATE alert_rules SET repeat_due_at = now() - interval '1 hour' WHERE id = %s",
                (board["rule"].id,),
            )
        assert await deliver_once(pool, sender) == 0

    assert [b["kind"] for b in _bodies(hook)] == ["firing", "repeat", "resolved"]


async def test_a_500_is_retried_with_backoff(pool, board, hook):
    hook.statuses = [500, 503]
    await store_values(pool, board, 95.0)
    async with open_sender(LOOPBACK) as sender:
        assert await deliver_once(pool, sender, FAST) == 1
        assert await deliver_once(pool, sender, FAST) == 0  # waiting out the backoff
        for _ in range(2):
            assert await eventually(lambda: deliver_once(pool, sender, FAST), 5, "the retry") == 1

    assert len({b["delivery_id"] for b in _bodies(hook)}) == 1
    log = await db.list_delivery_attempts(pool, board["ops"].id, 10)
    assert [a.outcome for a in reversed(log)] == ["retrying", "retrying", "delivered"]
    assert log[-1].detail.startswith("HTTP 500")
    assert log[0].status == "delivered"


async def test_a_400_is_not_retried(pool, board, hook):
    hook.statuses = [400]
    await store_values(pool, board, 95.0)
    async with open_sender(LOOPBACK) as sender:
        await deliver_once(pool, sender, FAST)
        await asyncio.sleep(0.1)  # a window: past the backoff (0.05 s), a retry would be due
        assert await deliver_once(pool, sender, FAST) == 0

    assert len(hook.received) == 1
    [attempt] = await db.list_delivery_attempts(pool, board["ops"].id, 10)
    assert (attempt.outcome, attempt.status) == ("failed", "failed")
    assert attempt.detail.startswith("HTTP 400")


async def test_retries_stop_at_the_delivery_window(pool, board, hook):
    hook.statuses = [500]
    await store_values(pool, board, 95.0)
    async with open_sender(LOOPBACK) as sender:
        await deliver_once(pool, sender, Backoff(first=7200, most=7200))  # past the 1 h window
    [attempt] = await db.list_delivery_attempts(pool, board["ops"].id, 10)
    assert attempt.status == "failed"
    assert "gave up after 1 attempts" in attempt.detail


async def test_a_connection_refused_is_retried(pool, board, hook):
    await db.set_rule_notifications(pool, board["ops"].id, board["rule"].id, [], None)
    closed = hook.url.rsplit(":", 1)[0] + ":1/hook"  # nothing listens on port 1
    contact = await db.create_contact_point(pool, board["ops"].id, "down", "webhook", closed, SECRET)
    await db.set_rule_notifications(pool, board["ops"].id, board["rule"].id, [contact.id], None)
    await store_values(pool, board, 95.0)
    async with open_sender(LOOPBACK) as sender:
        await deliver_once(pool, sender, FAST)
    [attempt] = await db.list_delivery_attempts(pool, board["ops"].id, 10)
    assert (attempt.outcome, attempt.status) == ("retrying", "pending")


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/hook",  # a literal loopback address
        "http://localhost:{port}/hook",  # a name resolving to one (checked at connect time)
        "http://[::ffff:127.0.0.1]:{port}/hook",  # loopback in IPv6 clothing
        "http://169.254.169.254/latest/meta-data",  # the cloud metadata service
        "http://10.0.0.1/hook",
        "file:///etc/passwd",
    ],
)
async def test_internal_addresses_are_refused_unless_allowed(pool, board, hook, target):
    port = hook.url.rsplit(":", 1)[1].split("/")[0]
    await db.set_rule_notifications(pool, board["ops"].id, board["rule"].id, [], None)
    contact = await db.create_contact_point(
        pool, board["ops"].id, "x", "webhook", target.format(port=port), "k"
    )
    await db.set_rule_notifications(pool, board["ops"].id, board["rule"].id, [contact.id], None)
    await store_values(pool, board, 95.0)
    async with open_sender(AllowList()) as sender:
        await deliver_once(pool, sender, FAST)
        await asyncio.sleep(0.1)  # a window: past the backoff (0.05 s), a retry would be due
        assert await deliver_once(pool, sender, FAST) == 0  # refused for good, not retried

    assert hook.received == []
    [attempt] = await db.list_delivery_attempts(pool, board["ops"].id, 10)
    assert attempt.outcome == "failed"
    assert "public address" in attempt.detail or "http(s)" in attempt.detail


async def test_an_allowed_host_name_may_resolve_to_loopback(pool, board, hook):
    port = hook.url.rsplit(":", 1)[1].split("/")[0]
    await db.set_rule_notifications(pool, board["ops"].id, board["rule"].id, [], None)
    contact = await db.create_contact_point(
        pool, board["ops"].id, "x", "webhook", f"http://localhost:{port}/hook", "k"
    )
    await db.set_rule_notifications(pool, board["ops"].id, board["rule"].id, [contact.id], None)
    await store_values(pool, board, 95.0)
    async with open_sender(AllowList.parse(["localhost"])) as sender:
        await deliver_once(pool, sender)
    assert len(hook.received) == 1


async def test_two_worker_processes_send_each_message_once(settings, pool, board, hook):
    # Each batch takes 1 s, longer than a worker's poll interval: both are claiming at once.
    hook.delay = 1.0
    urls = ["--database-url", settings.database_url, "--redis-url", settings.redis_url]
    run = ["run", "--interval", "5", "--notify-allow", "127.0.0.1"]
    with child(["-m", "worker", *urls, *run]) as first, child(["-m", "worker", *urls, *run]) as second:
        for _ in range(300):
            if all("worker started" in worker.output() for worker in (first, second)):
                break
            await asyncio.sleep(0.1)
        ids = [
            await db.enqueue_test_notification(pool, board["ops"].id, board["contact"].id) for _ in range(60)
        ]
        for _ in range(300):
            log = await db.list_delivery_attempts(pool, board["ops"].id, 100)
            if len(log) >= len(ids):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # time for a duplicate to show, if there were one
        assert first.poll() is None and second.poll() is None
        outputs = first.output(), second.output()
    delivered = sorted(b["delivery_id"] for b in _bodies(hook))
    assert delivered == sorted(ids)
    log = await db.list_delivery_attempts(pool, board["ops"].id, 100)
    assert sorted(a.notification_id for a in log) == sorted(ids)
    # Both took part: the claims were contended, not served by one worker alone.
    assert all("delivered" in output for output in outputs)


async def test_a_slack_webhook_gets_text_and_blocks(pool, board, hook):
    slack = await db.create_contact_point(pool, board["ops"].id, "team chat", "slack", hook.url, None)
    await db.set_rule_notifications(pool, board["ops"].id, board["rule"].id, [slack.id], None)
    await store_values(pool, board, 95.5)
    async with open_sender(LOOPBACK) as sender:
        await deliver_once(pool, sender)
        await db.enqueue_test_notification(pool, board["ops"].id, slack.id)
        await deliver_once(pool, sender)

    fired, test = _bodies(hook)
    assert set(fired) == {"text", "blocks"}
    assert fired["text"].startswith("[FIRING] Ops (ops): temp above 90 (value 95.5 at ")
    assert fired["blocks"] == [{"type": "section", "text": {"type": "mrkdwn", "text": fired["text"]}}]
    assert test["text"] == "Test notification from dashboard Ops (ops) to contact point 'team chat'"
    assert "X-Dashboard-Signature" not in hook.received[0].headers


async def test_slack_text_cannot_mention_or_link(pool, make_dashboard, make_metric, hook):
    board = await make_dashboard("web", name="<!channel> & <https://evil.example|click>")
    metric = await make_metric(board, "cpu")
    rule = await db.create_alert_rule(pool, metric.id, "above", 1.0)
    slack = await db.create_contact_point(pool, board.id, "chat", "slack", hook.url, None)
    await db.set_rule_notifications(pool, board.id, rule.id, [slack.id], None)
    await store_values(pool, {"temp": metric}, 5.0)
    async with open_sender(LOOPBACK) as sender:
        await deliver_once(pool, sender)
    [fired] = _bodies(hook)
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in fired["text"]
    assert "<" not in fired["text"]


async def test_old_finished_notifications_go_pending_ones_stay(pool, board, hook):
    hook.statuses = [200, 500]
    for _ in range(2):
        await db.enqueue_test_notification(pool, board["ops"].id, board["contact"].id)
    async with open_sender(LOOPBACK) as sender:
        await deliver_once(pool, sender)  # one delivered, one pending a retry
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("UPDATE notifications SET created_at = now() - interval '400 days'")
    assert await delete_expired_notifications(pool, 365, batch_size=1, pause=0) == 1
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT status FROM notifications")
        assert await cur.fetchall() == [("pending",)]
        await cur.execute("SELECT count(*) FROM notification_attempts")
        assert await cur.fetchone() == (1,)  # the deleted one's attempt went with it


async def test_storing_a_transition_sends_nothing_itself(pool, board, hook):
    hook.delay = 3.0  # a receiver this slow would show in the ingest path's time
    started = asyncio.get_running_loop().time()
    await store_values(pool, board, 95.0)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert hook.received == []  # only queued: the worker's loop sends
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT kind, status FROM notifications")
        assert await cur.fetchall() == [("firing", "pending")]
