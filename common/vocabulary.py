"""The product's closed vocabularies, written once.

The data layer (common/db), the message schemas (common/schemas.py), the
templates (a Jinja global, server/app.py) and, through the page's
`<script id="vocabulary">` element, the browser read these; the database's
CHECK constraints (migrations/) are the only other place they appear.
No imports: anything may import this module.
"""

from __future__ import annotations

from typing import Any

# What a member may do: viewers watch; editors also change the dashboard,
# its metrics and its members.
ROLES = ("viewer", "editor")
VIEWER, EDITOR = ROLES

METRIC_TYPES = ("counter", "gauge", "histogram")
# What a new metric is unless said otherwise (or its source's reading says).
DEFAULT_METRIC_TYPE = "gauge"

# Personal preferences (migrations/0006_preferences.sql).
THEMES = ("light", "dark")
CHART_STYLES = ("line", "area", "points")
CHART_STYLE_LABELS = {"line": "Line", "area": "Area", "points": "Points"}
DEFAULT_CHART_STYLE = "line"

# The time ranges a page shows and a client may ask `history` for, in seconds.
RANGES = {"5m": 300, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
RANGE_LABELS = {"5m": "5 min", "1h": "1 h", "24h": "24 h", "7d": "7 d"}
DEFAULT_RANGE = "5m"

# An alert rule fires when its metric is above or below the threshold.
ALERT_CONDITIONS = ("above", "below")

# Where alert notifications go (common/db/notifications.py).
CONTACT_KINDS = ("webhook", "slack", "email")

# The bounds of a dashboard's own retention of raw values, in days (the
# CHECK in migrations/0006).
MIN_RETENTION_DAYS = 1
MAX_RETENTION_DAYS = 36500


def as_json() -> dict[str, Any]:
    """What the page's scripts read: the `<script id="vocabulary">` element's JSON."""
    return {
        "roles": list(ROLES),
        "metric_types": list(METRIC_TYPES),
        "default_metric_type": DEFAULT_METRIC_TYPE,
        "themes": list(THEMES),
        "chart_styles": list(CHART_STYLES),
        "default_chart_style": DEFAULT_CHART_STYLE,
        "ranges": RANGES,
        "range_labels": RANGE_LABELS,
        "default_range": DEFAULT_RANGE,
        "alert_conditions": list(ALERT_CONDITIONS),
        "contact_kinds": list(CONTACT_KINDS),
        "max_retention_days": MAX_RETENTION_DAYS,
    }
