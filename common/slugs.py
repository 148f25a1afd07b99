"""Dashboard slugs: the short names the CLI uses (lower-case letters, digits, single dashes)."""

from __future__ import annotations

import re

# The same rule as the CHECK on dashboards.slug.
SLUG_PATTERN = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def slugify(name: str) -> str:
    """The slug a name suggests: its letters and digits, lower-cased, dash-joined.

    Empty when the name has no ASCII letter or digit.
    """
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
