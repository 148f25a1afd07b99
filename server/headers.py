"""Security headers on every response.

The pages load only their own scripts, styles and sockets, so the Content
Security Policy allows nothing else: an injected <script> or a script from
elsewhere would not run even if some server text were ever rendered as
HTML. Styles may be inline because uPlot positions its elements with style
attributes. No page may be framed (clickjacking), no response is
content-sniffed into something it is not, and no page is kept in a cache.
"""

from __future__ import annotations

from aiohttp import web

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: before any byte goes out, errors and static files included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.content_type == "text/html":
        # Pages show a user's dashboards: after logging out, Back must not bring
        # them up again from the browser's cache (or a shared proxy's).
        response.headers.setdefault("Cache-Control", "no-store")
