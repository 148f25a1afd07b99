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
"""

from __future__ import annotations

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


async def _token_dashboard(request: web.Request) -> int:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    dashboard_id = None
    if scheme.lower() == "bearer" and token:
        dashboard_id = await db.use_api_token(request.app[DB_KEY], token_hash(token.strip()))
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
    return await _store(request, metrics, body["values"])


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
    return await _store(request, metrics, body["values"])


async def _store(
    request: web.Request, metrics: dict[int, db.Metric], values: list[dict[str, Any]]
) -> web.Response:
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
            stored = await db.insert_pushed_values(request.app[DB_KEY], rows, counter_ids)
        except db.CounterDecreases as exc:
            for decrease in exc.decreases:
                _refuse(errors, decrease.index, "value", _decrease_message(metrics, decrease))
    if errors:
        raise json_error(
            web.HTTPUnprocessableEntity, "values refused; nothing was stored", {"values": errors}
        )
    await publish_stored(
        request.app[DB_KEY],
        request.app[REDIS_KEY],
        request.app[CHANNELS_KEY],
        metrics,
        stored,
        on_publish_error=request.app[TELEMETRY_KEY].backend_error,
    )
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
    )


def _refuse(errors: dict[str, dict[str, list[str]]], index: int, field: str, message: str) -> None:
    errors.setdefault(str(index), {}).setdefault(field, []).append(message)


def _decrease_message(metrics: dict[int, db.Metric], decrease: Decrease) -> str:
    name = metrics[decrease.metric_id].name
    if decrease.later:
        return f"counter {name} would decrease from {decrease.value} to {decrease.neighbour}, a value stored after it"
    return f"counter {name} would decrease from {decrease.neighbour} to {decrease.value}"
