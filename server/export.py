"""Downloads of a dashboard's or one metric's values, streamed as they are read."""

from __future__ import annotations

from aiohttp import web

from common import db
from common.export import CONTENT_TYPES, FORMATS, RangeError, export_chunks, export_range, filename
from server.auth import login_required
from server.keys import DB_KEY, USER_KEY

NOT_FOUND = "No such dashboard or metric, or you are not a member of the dashboard."


@login_required
async def export_values(request: web.Request) -> web.StreamResponse:
    """GET /dashboards/{id}/export?format=csv|json&since=&until=&metric=ID (members only)."""
    pool = request.app[DB_KEY]
    file_format = request.query.get("format", "csv")
    if file_format not in FORMATS:
        raise web.HTTPBadRequest(text=f"format: must be one of {', '.join(FORMATS)}")
    try:
        span = export_range(request.query.get("since"), request.query.get("until"))
    except RangeError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    dashboard_id = int(request.match_info["id"])
    dashboard = None
    if dashboard_id <= 2**63 - 1:
        dashboard = await db.get_member_dashboard(pool, dashboard_id, request[USER_KEY].id)
    if dashboard is None:
        # The same answer as for a dashboard that does not exist: ids are not probeable.
        raise web.HTTPNotFound(text=NOT_FOUND)
    metrics = await db.list_metrics(pool, dashboard.id)
    metric = None
    if "metric" in request.query:
        metric = next((m for m in metrics if str(m.id) == request.query["metric"]), None)
        if metric is None:
            raise web.HTTPNotFound(text=NOT_FOUND)
        metrics = [metric]

    response = web.StreamResponse(
        headers={
            "Content-Type": CONTENT_TYPES[file_format],
            "Content-Disposition": f'attachment; filename="{filename(dashboard, metric, span, file_format)}"',
            "Cache-Control": "no-store",
        }
    )
    # Chunked: the length is not known until the last row has been read.
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for chunk in export_chunks(pool, dashboard, metrics, span, file_format):
        # write() waits while the client's buffer is full: a slow download
        # slows the reading down instead of piling rows up in memory.
        await response.write(chunk)
    await response.write_eof()
    return response
