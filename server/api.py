"""The HTTP push API: programs feed metrics with a per-dashboard bearer token.

    POST /api/v1/metrics/{id}/values   {"value": 1.5} or {"values": [{"value", "timestamp"?}, ...]}
    POST /api/v1/values                {"values": [{"metric_id", "value", "timestamp"?}, ...]}

Only metrics whose source is `push` take values: the worker's generated ones
refuse them, so real and generated values never mix. A request is validated
whole before anything is written, and then written in one transaction: it is
stored entirely or not at all. A counter's rows are locked for the check that
it never decreases and the insert (common/db/values.py), so concurrent pushes
cannot interleave between the two. Values are published as the worker's are,
after the commit.

A push may carry an `Idempotency-Key` header: sent again with the same key
(its answer lost, a client retrying) within KEY_HOURS, it is answered with
what the first one stored and stores nothing (common/db/pushkeys.py).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from common import db
from common.counters import Decrease
from common.ingest import publish_stored
from common.schemas import BatchPushSchema, PushSchema, load_plain_push
from common.sources import PUSH, is_generated
from common.tokens import token_hash
from server.jsonbody import json_error, load_body
from server.keys import CHANNELS_KEY, DB_KEY, REDIS_KEY, TELEMETRY_KEY

# Pushed timestamps may differ this much from the server's clock.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# An Idempotency-Key: visible ASCII, as a bare token or a quoted string (the
# IETF draft's sf-string form), 1 to 255 characters inside.
_KEY = re.compile(r'"([\x21\x23-\x7e]{1,255})"|([\x21\x23-\x7e]{1,255})')


async def _token_dashboard(request: web.Request) -> int:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    dashboard_id = None
    token = token.strip()
    # Tokens are ASCII (common/tokens.py); a header's other bytes arrive as
    # lone surrogates, which no token has and no hash can be made of.
    if scheme.lower() == "bearer" and token and token.isascii():
        dashboard_id = await db.use_api_token(request.app[DB_KEY], token_hash(token))
    if dashboard_id is None:
        raise json_error(
            web.HTTPUnauthorized,
            "a valid API token is required: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="dashboard"'},
        )
    return dashboard_id


def _one_value_shorthand(data: dict[str, Any]) -> dict[str, Any]:
    """`{"value": 1.5}` means `{"values": [{"value": 1.5}]}`."""
    return {"values": [data]} if "values" not in data and "value" in data else data


async def push_metric_values(request: web.Request) -> web.Response:
    dashboard_id = await _token_dashboard(request)
    body = await load_body(
        request, PushSchema(), _one_value_shorthand, lambda data: load_plain_push(data, with_metric_id=False)
    )
    metric_id = int(request.match_info["id"])
    for item in body["values"]:
        item["metric_id"] = metric_id
    metrics = {m.id: m for m in await db.list_metrics(request.app[DB_KEY], dashboard_id)}
    if metric_id not in metrics:
        raise json_error(web.HTTPNotFound, f"no metric {metric_id} on this token's dashboard")
    return await _store(request, dashboard_id, metrics, body["values"])


async def push_values(request: web.Request) -> web.Response:
    dashboard_id = await _token_dashboard(request)
    body = await load_body(
        request,
        BatchPushSchema(),
        _one_value_shorthand,
        lambda data: load_plain_push(data, with_metric_id=True),
    )
    metrics = {m.id: m for m in await db.list_metrics(request.app[DB_KEY], dashboard_id)}
    unknown = {
        str(i): {"metric_id": [f"no metric {item['metric_id']} on this token's dashboard"]}
        for i, item in enumerate(body["values"])
        if item["metric_id"] not in metrics
    }
    if unknown:
        raise json_error(web.HTTPUnprocessableEntity, "unknown metrics", {"values": unknown})
    return await _store(request, dashboard_id, metrics, body["values"])


async def _push_key(request: web.Request, dashboard_id: int) -> db.PushKey | None:
    """The request's Idempotency-Key, if it has one (400 if malformed)."""
    header = request.headers.get("Idempotency-Key")
    if header is None:
        return None
    match = _KEY.fullmatch(header.strip(" \t"))
    if match is None:
        raise json_error(
            web.HTTPBadRequest,
            "Idempotency-Key must be 1 to 255 visible ASCII characters other than '\"', bare or in double quotes",
            {"Idempotency-Key": ["malformed"]},
        )
    # The same key with another request (another metric, other values) is refused, not answered.
    digest = hashlib.sha256(request.path.encode() + b"\n" + await request.read()).digest()
    return db.PushKey(dashboard_id, match[1] or match[2], digest)


async def _earlier_push(
    request: web.Request, key: db.PushKey, metrics: dict[int, db.Metric]
) -> web.Response | None:
    """The answer to a push with this key, if one was stored (422 if it was another request)."""
    try:
        earlier = await db.find_push(request.app[DB_KEY], key)
    except db.PushKeyReused:
        raise json_error(
            web.HTTPUnprocessableEntity,
            f"Idempotency-Key {key.key!r} was used by another request in the last {db.KEY_HOURS} hours;"
            " a new request needs a new key",
            {"Idempotency-Key": ["used by another request"]},
        ) from None
    if earlier is None:
        return None
    stored = [db.MetricValue(*row) for row in earlier.stored]
    if not earlier.published:
        # Its first attempt died after the commit, before publishing (its COMMIT
        # answer lost): published now. Should both have published, servers drop
        # the second copy by its batch number and alert rules skip values seen.
        await _publish(request, metrics, [v for v in stored if v.metric_id in metrics], key)
    return _stored_answer(stored, replayed=True)


async def _store(
    request: web.Request, dashboard_id: int, metrics: dict[int, db.Metric], values: list[dict[str, Any]]
) -> web.Response:
    key = await _push_key(request, dashboard_id)
    if key is not None:
        # Before the checks: a retry minutes later must get the answer, not a stale-timestamp refusal.
        earlier = await _earlier_push(request, key, metrics)
        if earlier is not None:
            return earlier
    now = datetime.now(UTC)
    errors: dict[str, dict[str, list[str]]] = {}
    rows = []
    for i, item in enumerate(values):
        metric = metrics[item["metric_id"]]
        if is_generated(metric.source):
            # Real data is never mixed with generated data.
            _refuse(
                errors,
                i,
                "metric_id",
                f"metric {metric.name} gets {metric.source} values from the worker;"
                f" only a metric whose source is {PUSH} takes pushed values",
            )
        stamp = item["timestamp"]  # None: stamped when stored, in the order of storing
        if stamp is not None and abs(stamp - now) > MAX_CLOCK_SKEW:
            _refuse(
                errors,
                i,
                "timestamp",
                f"more than {MAX_CLOCK_SKEW} away from the server's clock ({now.isoformat()})",
            )
        rows.append((item["metric_id"], item["value"], stamp))
    if not errors:
        counter_ids = [metric.id for metric in metrics.values() if metric.type == "counter"]
        try:
            stored = await db.insert_pushed_values(request.app[DB_KEY], rows, counter_ids, key)
        except db.PushKeyTaken:
            # The same push, sent twice at once: the other one stored it.
            assert key is not None
            earlier = await _earlier_push(request, key, metrics)
            if earlier is None:
                raise RuntimeError(f"push key {key.key!r} taken, yet nothing found under it") from None
            return earlier
        except db.NotFound:
            # Deleted since the token was checked.
            raise json_error(web.HTTPNotFound, "this token's dashboard no longer exists") from None
        except db.CounterDecreases as exc:
            for decrease in exc.decreases:
                _refuse(errors, decrease.index, "value", _decrease_message(metrics, decrease))
    if errors:
        raise json_error(
            web.HTTPUnprocessableEntity, "values refused; nothing was stored", {"values": errors}
        )
    await _publish(request, metrics, stored, key)
    return _stored_answer(stored)


async def _publish(
    request: web.Request, metrics: dict[int, db.Metric], stored: list[db.MetricValue], key: db.PushKey | None
) -> None:
    failures: list[Exception] = []

    def failed(exc: Exception) -> None:
        failures.append(exc)
        request.app[TELEMETRY_KEY].backend_error(exc)

    await publish_stored(
        request.app[DB_KEY], request.app[REDIS_KEY], request.app[CHANNELS_KEY], metrics, stored, failed
    )
    if key is not None and not failures:
        # Not after a failed publish: a retry with the key publishes again.
        await db.mark_published(request.app[DB_KEY], key)


def _stored_answer(stored: list[db.MetricValue], replayed: bool = False) -> web.Response:
    """201 with the values stored; `replayed`: by an earlier push with the same Idempotency-Key."""
    # A push's values mostly share one timestamp (stamped when stored): written once.
    stamps: dict[datetime, str] = {}
    return web.json_response(
        {
            "stored": len(stored),
            "values": [
                {
                    "id": v.id,
                    "metric_id": v.metric_id,
                    "value": v.value,
                    "timestamp": stamps.get(v.ts) or stamps.setdefault(v.ts, v.ts.isoformat()),
                }
                for v in stored
            ],
        },
        status=201,
        headers={"Idempotent-Replayed": "true"} if replayed else None,
    )


def _refuse(errors: dict[str, dict[str, list[str]]], index: int, field: str, message: str) -> None:
    errors.setdefault(str(index), {}).setdefault(field, []).append(message)


def _decrease_message(metrics: dict[int, db.Metric], decrease: Decrease) -> str:
    name = metrics[decrease.metric_id].name
    if decrease.later:
        return f"counter {name} would decrease from {decrease.value} to {decrease.neighbour}, a value stored after it"
    return f"counter {name} would decrease from {decrease.neighbour} to {decrease.value}"
