"""JSON request bodies and JSON errors, as the push API and the editing
endpoints answer them: `{"error": message, "errors": {field: [...]}}`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from marshmallow import Schema, ValidationError

from common.db import QuotaExceeded
from common.schemas import load_strict_json

JSON_CONTENT_TYPE = "application/json"


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
    plain: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """The body as a JSON object validated by `schema` (after `reshape`), or a 4xx
    whose `errors` name what was wrong (`body` for the body as a whole).

    `plain` may load the common shape of a body faster, exactly as `schema`
    would; it returns None for anything else, which `schema` then loads."""
    data = await _json_object(request)
    if reshape is not None:
        data = reshape(data)
    if plain is not None and (loaded := plain(data)) is not None:
        return loaded
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise json_error(web.HTTPBadRequest, "invalid request", exc.messages_dict) from None


async def _json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != JSON_CONTENT_TYPE:
        message = f"send the body as JSON (Content-Type: {JSON_CONTENT_TYPE})"
        raise json_error(web.HTTPUnsupportedMediaType, message, {"Content-Type": [message]})
    raw = await request.read()
    try:
        data = load_strict_json(raw.decode(request.charset or "utf-8"))
    except LookupError:
        raise _bad_body(f"unknown charset {request.charset!r}") from None
    except UnicodeDecodeError:
        raise _bad_body(f"not valid {request.charset or 'utf-8'} text") from None
    except ValueError as exc:
        raise _bad_body(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _bad_body("body must be a JSON object")
    return data


def _bad_body(reason: str) -> web.HTTPError:
    message = reason if reason.startswith("body") else f"body is {reason}"
    return json_error(web.HTTPBadRequest, message, {"body": [reason]})
