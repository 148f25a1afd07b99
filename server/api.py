"""The HTTP push API: programs feed metrics with a per-dashboard bearer token.

    POST /api/v1/metrics/{id}/values   {"value": 1.5} or {"values": [{"value", "timestamp"?}, ...]}
    POST /api/v1/values                {"values": [{"metric_id", "value", "timestamp"?}, ...]}

A request is validated whole before anything is written, and then written in
one transaction: it is stored entirely or not at all. Values go through the
same store-then-publish path as the worker's ticks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from common import db
from common.ingest import store_and_publish
from common.schemas import BatchPushSchema, PushSchema
from common.tokens import token_hash
from server.jsonbody import json_error, load_body
from server.keys import CHANNELS_KEY, DB_KEY, METRICS_KEY, REDIS_KEY

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
    body = await load_body(request, PushSchema(), _one_value_shorthand)
    metric_id = int(request.match_info["id"])
    for item in body["values"]:
        item["metric_id"] = metric_id
    metrics = {m.id: m for m in await db.list_metrics(request.app[DB_KEY], dashboard_id)}
    if metric_id not in metrics:
        raise json_error(web.HTTPNotFound, f"no metric {metric_id} on this token's dashboard")
    return await _store(request, metrics, body["values"])


async def push_values(request: web.Request) -> web.Response:
    dashboard_id = await _token_dashboard(request)
    body = await load_body(request, BatchPushSchema(), _one_value_shorthand)
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
        stamp = item["timestamp"] or now
        if abs(stamp - now) > MAX_CLOCK_SKEW:
            errors[str(i)] = {
                "timestamp": [f"more than {MAX_CLOCK_SKEW} away from the server's clock ({now.isoformat()})"]
            }
        rows.append((item["metric_id"], item["value"], stamp))
    errors.update(await _counter_decreases(request, metrics, rows))
    if errors:
        raise json_error(
            web.HTTPUnprocessableEntity, "values refused; nothing was stored", {"values": errors}
        )
    stored = await store_and_publish(
        request.app[DB_KEY],
        request.app[REDIS_KEY],
        request.app[CHANNELS_KEY],
        metrics,
        rows,
        on_publish_error=request.app[METRICS_KEY].backend_error,
    )
    return web.json_response(
        {
            "stored": len(stored),
            "values": [
                {"id": v.id, "metric_id": v.metric_id, "value": v.value, "timestamp": v.ts.isoformat()}
                for v in stored
            ],
        },
        status=201,
    )


async def _counter_decreases(
    request: web.Request, metrics: dict[int, db.Metric], rows: list[tuple[int, float, datetime]]
) -> dict[str, dict[str, list[str]]]:
    """Counters only grow: each pushed value must be at least the one before it."""
    counter_ids = sorted({metric_id for metric_id, _, _ in rows if metrics[metric_id].type == "counter"})
    if not counter_ids:
        return {}
    last = await db.last_values(request.app[DB_KEY], counter_ids)
    errors = {}
    for i, (metric_id, value, _) in enumerate(rows):
        if metrics[metric_id].type != "counter":
            continue
        previous = last.get(metric_id)
        if previous is not None and value < previous:
            name = metrics[metric_id].name
            errors[str(i)] = {"value": [f"counter {name} would decrease from {previous} to {value}"]}
        else:
            last[metric_id] = value
    return errors
