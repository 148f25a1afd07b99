"""One attempt at one notification, and what its outcome means for the next."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from common import db
from worker.notify import messages
from worker.notify.guard import AddressRefused, AllowList, GuardedResolver, check_url
from worker.notify.mail import SmtpSettings, send_email

DELIVERED, RETRYING, FAILED = "delivered", "retrying", "failed"
# Per attempt: connect, send, and the receiver's answer.
SEND_TIMEOUT = 5.0
# Of a receiver's answer only this much is read, for the delivery log.
MAX_ANSWER_BYTES = 1024
# Answers that say "later" rather than "never".
_RETRY_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class Outcome:
    result: str  # DELIVERED, RETRYING or FAILED
    detail: str


class Sender:
    """Sends notifications over one HTTP session whose connector checks every address."""

    def __init__(self, session: aiohttp.ClientSession, allow: AllowList, smtp: SmtpSettings | None) -> None:
        self._session = session
        self._allow = allow
        self._smtp = smtp

    async def attempt(self, delivery: db.Delivery) -> Outcome:
        """Send once; never raises for what the receiver or the network does."""
        if delivery.contact_kind == "webhook":
            raw = messages.encode(messages.webhook_body(delivery))
            headers = {messages.SIGNATURE_HEADER: messages.signature(delivery.secret or "", raw)}
            return await self._post(delivery, raw, headers)
        if delivery.contact_kind == "slack":
            # Slack's incoming webhooks authenticate by their secret URL: no signature.
            return await self._post(delivery, messages.encode(messages.slack_body(delivery)), {})
        if delivery.contact_kind == "email":
            return await self._mail(delivery)
        return Outcome(FAILED, f"contact point kind {delivery.contact_kind!r} is not supported")

    async def _mail(self, delivery: db.Delivery) -> Outcome:
        if self._smtp is None:
            return Outcome(FAILED, "no SMTP server configured (dashboard-worker run --smtp-host)")
        accepted, detail = await send_email(self._smtp, delivery)
        return Outcome({True: DELIVERED, None: RETRYING, False: FAILED}[accepted], detail)

    async def _post(self, delivery: db.Delivery, raw: bytes, headers: dict[str, str]) -> Outcome:
        try:
            url = check_url(delivery.target, self._allow)
            headers = {
                **headers,
                "Content-Type": "application/json",
                messages.DELIVERY_HEADER: str(delivery.id),
            }
            # Redirects are not followed: each hop would need the same checks.
            async with self._session.post(url, data=raw, headers=headers, allow_redirects=False) as response:
                answer = await response.content.read(MAX_ANSWER_BYTES)
                return _classify(response.status, answer.decode(errors="replace"))
        except AddressRefused as exc:
            return Outcome(FAILED, str(exc))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                return Outcome(FAILED, str(exc.os_error))
            return Outcome(RETRYING, f"cannot connect: {exc}")
        except TimeoutError:
            return Outcome(RETRYING, f"no answer within {SEND_TIMEOUT:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(RETRYING, f"{type(exc).__name__}: {exc}")


def _classify(status: int, answer: str) -> Outcome:
    detail = f"HTTP {status}" + (f": {answer.strip()[:200]}" if answer.strip() else "")
    if 200 <= status < 300:
        return Outcome(DELIVERED, detail)
    if status >= 500 or status in _RETRY_STATUSES:
        return Outcome(RETRYING, detail)
    return Outcome(FAILED, detail)


@asynccontextmanager
async def open_sender(allow: AllowList, smtp: SmtpSettings | None = None) -> AsyncIterator[Sender]:
    """A Sender whose session (and guarded connector) closes on exit."""
    # No DNS cache: every connection resolves, and so is checked, anew.
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow), use_dns_cache=False, limit=20)
    timeout = aiohttp.ClientTimeout(total=SEND_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
        yield Sender(session, allow, smtp)
