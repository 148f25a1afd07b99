"""URL map of the server."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from server import (
    alerts_api,
    api,
    editing,
    export,
    health,
    notifications_api,
    preferences,
    tokens_api,
    views,
)
from server.auth import METRICS_PATH, PROBE_PATHS
from server.live import endpoint

STATIC_DIR = Path(__file__).parent / "static"


def setup_routes(app: web.Application) -> None:
    # Ids in paths are ASCII digits (\d also takes other scripts'), at most
    # 4,300 of them: what int() takes (beyond, it raised: a 500). An id beyond
    # a bigint is the handler's to refuse, with the answer it gives an unknown
    # one (ids are not probeable); anything else matches no route: 404.
    app.router.add_get("/", views.index, name="index")
    app.router.add_get("/login", views.login_page, name="login")
    app.router.add_post("/login", views.login_submit)
    app.router.add_post("/logout", views.logout, name="logout")
    app.router.add_get("/dashboards/", views.dashboard_list, name="dashboards")
    app.router.add_post("/dashboards/", views.create_dashboard)
    app.router.add_get(r"/dashboards/{id:[0-9]{1,4300}}/", views.dashboard_page, name="dashboard")
    app.router.add_get(
        r"/dashboards/{id:[0-9]{1,4300}}/export", export.export_values, name="dashboard_export"
    )
    _add_editing_routes(app)
    _add_preference_routes(app)
    app.router.add_get(
        r"/ws/dashboard/{id:[0-9]{1,4300}}/", endpoint.dashboard_socket, name="dashboard_socket"
    )
    app.router.add_post(
        r"/api/v1/metrics/{id:[0-9]{1,4300}}/values", api.push_metric_values, name="push_metric_values"
    )
    app.router.add_post("/api/v1/values", api.push_values, name="push_values")
    app.router.add_get("/playground/", views.playground, name="playground")
    app.router.add_get("/asyncapi.json", views.asyncapi, name="asyncapi")
    app.router.add_get("/asyncapi/", views.asyncapi_page, name="asyncapi_page")
    app.router.add_static("/static/", STATIC_DIR, name="static")
    healthz, readyz = PROBE_PATHS
    app.router.add_get(healthz, health.healthz, name="healthz")
    app.router.add_get(readyz, health.readyz, name="readyz")
    app.router.add_get(METRICS_PATH, health.metrics, name="metrics")


def _add_editing_routes(app: web.Application) -> None:
    """JSON endpoints for a dashboard's editors (server/editing.py, tokens_api.py, alerts_api.py,
    notifications_api.py)."""
    base = r"/dashboards/{id:[0-9]{1,4300}}"
    app.router.add_post(base + "/settings", editing.edit_dashboard, name="dashboard_settings")
    app.router.add_post(base + "/delete", editing.delete_dashboard)
    app.router.add_post(base + "/metrics", editing.add_metric, name="dashboard_metrics")
    app.router.add_post(base + "/metrics/order", editing.reorder_metrics, name="dashboard_metric_order")
    app.router.add_post(base + r"/metrics/{metric_id:[0-9]{1,4300}}", editing.edit_metric)
    app.router.add_post(base + r"/metrics/{metric_id:[0-9]{1,4300}}/delete", editing.remove_metric)
    app.router.add_get(base + "/members", editing.list_members, name="dashboard_members")
    app.router.add_post(base + "/members", editing.add_member)
    app.router.add_post(base + r"/members/{user_id:[0-9]{1,4300}}/role", editing.change_role)
    app.router.add_post(base + r"/members/{user_id:[0-9]{1,4300}}/delete", editing.remove_member)
    app.router.add_get(base + "/tokens", tokens_api.list_tokens, name="dashboard_tokens")
    app.router.add_post(base + "/tokens", tokens_api.create_token)
    app.router.add_post(base + r"/tokens/{token_id:[0-9]{1,4300}}/revoke", tokens_api.revoke_token)
    app.router.add_post(base + r"/tokens/{token_id:[0-9]{1,4300}}/delete", tokens_api.delete_token)
    app.router.add_get(base + "/alerts", alerts_api.list_rules, name="dashboard_alerts")
    app.router.add_post(base + "/alerts", alerts_api.add_rule)
    app.router.add_post(base + r"/alerts/{rule_id:[0-9]{1,4300}}/delete", alerts_api.remove_rule)
    app.router.add_post(
        base + r"/alerts/{rule_id:[0-9]{1,4300}}/notifications", notifications_api.set_rule_notifications
    )
    contacts = base + "/contact-points"
    app.router.add_get(contacts, notifications_api.list_contact_points, name="dashboard_contact_points")
    app.router.add_post(contacts, notifications_api.add_contact_point)
    app.router.add_post(contacts + r"/{contact_point_id:[0-9]{1,4300}}", notifications_api.edit_contact_point)
    app.router.add_post(
        contacts + r"/{contact_point_id:[0-9]{1,4300}}/delete", notifications_api.remove_contact_point
    )
    app.router.add_post(contacts + r"/{contact_point_id:[0-9]{1,4300}}/test", notifications_api.send_test)


def _add_preference_routes(app: web.Application) -> None:
    """JSON endpoints for each member's own preferences (server/preferences.py)."""
    path = r"/dashboards/{id:[0-9]{1,4300}}/preferences"
    app.router.add_get(path, preferences.get_dashboard_preferences, name="dashboard_preferences")
    app.router.add_patch(path, preferences.change_dashboard_preferences)
    app.router.add_get("/preferences", preferences.get_user_preferences, name="preferences")
    app.router.add_patch("/preferences", preferences.change_user_preferences)
