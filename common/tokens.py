"""API tokens: random, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "dsh_"


def new_token() -> str:
    """A fresh token: 256 random bits, recognisable by its prefix in leaks and logs."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def display_prefix(token: str) -> str:
    """Enough of a token to tell which one it is in a listing, not enough to use it."""
    return token[: len(TOKEN_PREFIX) + 6]
