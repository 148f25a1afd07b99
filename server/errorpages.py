"""What a person sees when a page cannot be served: a page, not a stack of text.

Browsers (requests that accept HTML) get the site's own "not found" page for
an unknown address, and a "try again shortly" page with 503 and Retry-After
while PostgreSQL or Redis cannot be reached; other clients get the same
status with a short JSON error. Errors a handler chose to answer with its
own body (the JSON endpoints' field errors) pass through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp_jinja2
from aiohttp import web

from common.failures import BACKEND_UNAVAILABLE

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RETRY_AFTER_SECONDS = 5
# The body aiohttp gives a 404 that no handler wrote (an unknown URL).
_ROUTER_NOT_FOUND = "404: Not Found"
UNAVAILABLE_MESSAGE = "The service is temporarily unavailable; try again in a few seconds."


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPNotFound as exc:
        if exc.text != _ROUTER_NOT_FOUND or not _wants_html(request):
            raise
        return _page(request, 404, "Page not found", "There is nothing at this address.")
    except BACKEND_UNAVAILABLE as exc:
        log.warning("%s %s: backend unavailable: %s", request.method, request.path, exc)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if not _wants_html(request):
            return web.json_response({"error": UNAVAILABLE_MESSAGE}, status=503, headers=headers)
        response = _page(request, 503, "Temporarily unavailable", UNAVAILABLE_MESSAGE)
        response.headers.update(headers)
        return response


def _wants_html(request: web.Request) -> bool:
    return request.method in ("GET", "HEAD", "POST") and "text/html" in request.headers.get("Accept", "")


def _page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    # No session lookup: the session store may be what is down. So no user
    # name in the top bar, and nothing that needs a CSRF token.
    context = {"user": None, "title": title, "message": message}
    return aiohttp_jinja2.render_template("error.html", request, context, status=status)
