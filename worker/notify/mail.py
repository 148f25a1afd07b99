"""E-mail notifications over SMTP (the operator's server: --smtp-host and friends).

smtplib runs in a thread, with a timeout on every socket operation, so a slow
mail server holds one thread for a bounded time and never the event loop.
The server is the operator's own setting, not an editor's, so the address
guard of webhooks does not apply to it.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from common import db
from worker.notify import messages

# Seconds for each socket operation of one send (connect, each command).
SMTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    starttls: bool = False
    sender: str = "dashboard@localhost"


def _send(settings: SmtpSettings, message: EmailMessage) -> None:
    with smtplib.SMTP(settings.host, settings.port, timeout=SMTP_TIMEOUT) as smtp:
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        smtp.send_message(message)


async def send_email(settings: SmtpSettings, delivery: db.Delivery) -> tuple[bool | None, str]:
    """(True, detail) when accepted; (None, detail) to retry (4xx, connection, timeout);
    (False, detail) never to retry (5xx, STARTTLS refused)."""
    message = messages.email_message(delivery, settings.sender)
    try:
        await asyncio.to_thread(_send, settings, message)
    except smtplib.SMTPRecipientsRefused as exc:
        code, reason = next(iter(exc.recipients.values()))
        return _by_code(code, reason)
    except smtplib.SMTPResponseException as exc:
        return _by_code(exc.smtp_code, exc.smtp_error)
    except smtplib.SMTPNotSupportedError as exc:
        return False, f"SMTP server: {exc}"
    except (smtplib.SMTPException, OSError) as exc:
        return None, f"SMTP {type(exc).__name__}: {exc}"
    return True, f"accepted by {settings.host}:{settings.port}"


def _by_code(code: int, reason: bytes | str) -> tuple[bool | None, str]:
    text = reason.decode(errors="replace") if isinstance(reason, bytes) else reason
    # 4yz: transient ("try again later"); 5yz: permanent.
    return (None if 400 <= code < 500 else False), f"SMTP {code}: {text}"
