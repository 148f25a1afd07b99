"""Password hashing with argon2id (argon2-cffi's tuned defaults)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.schemas import utf8_text

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that a wrong username and
# a wrong password take the same time to answer.
_DUMMY_HASH = _hasher.hash("not a real password")


class UnusablePassword(ValueError):
    """A new password that must not be set (empty, or only spaces)."""


def hash_password(password: str) -> str:
    """The hash to store for a new password; UnusablePassword for an empty one."""
    if not password.strip():
        raise UnusablePassword("must not be empty or only spaces")
    if not utf8_text(password):
        raise UnusablePassword("must be valid text (no lone surrogates)")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if the password matches; a None hash (unknown user) never does."""
    if not utf8_text(password):
        return False  # no stored hash can have been made of it (hash_password refuses it)
    try:
        _hasher.verify(password_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """Whether a stored hash was made with other parameters than today's
    (older, weaker ones): rehash it at the next successful login."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False
