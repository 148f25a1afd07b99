"""JSON request bodies and JSON errors, as the push API and the editing
endpoints answer them: `{"error": message, "errors": {field: [...]}}`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from marshmallow import Schema, ValidationError

from common.db import QuotaExceeded


def json_error(
    status: type[web.HTTPError], message: str, errors: Mapping[str, Any] | None = None, **kwargs: Any
) -> web.HTTPError:
    """An HTTP error whose body says what was wrong, field by field."""
    body = json.dumps({"error": message, "errors": errors or {}})
    return status(text=body, content_type="application/json", **kwargs)


def quota_refused(exc: QuotaExceeded) -> web.HTTPError:
    """422 for a creation over a quota; `limit` names the setting and its value."""
    body = json.dumps({"error": str(exc), "errors": {}, "limit": {"name": exc.quota, "value": exc.limit}})
    return web.HTTPUnprocessableEntity(text=body, content_type="application/json")


async def load_body(
    request: web.Request,
    schema: Schema,
    reshape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The body as a JSON object validated by `schema` (after `reshape`), or a 400."""
    try:
        data = await request.json()
    except ValueError:
        raise json_error(web.HTTPBadRequest, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise json_error(web.HTTPBadRequest, "body must be a JSON object")
    if reshape is not None:
        data = reshape(data)
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise json_error(web.HTTPBadRequest, "invalid request", exc.messages_dict) from None
