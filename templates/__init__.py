"""Jinja2 templates of the server's pages (autoescaped)."""
