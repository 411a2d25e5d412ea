"""Device identity: tokens issued at registration, stored only as hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid


def new_identity() -> tuple[str, str]:
    """(device id, token): the id is public, the token is the device's secret."""
    return uuid.uuid4().hex, secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    # Tokens are 256-bit random, so a plain hash resists guessing; the ledger never holds a token.
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(token), stored_hash)


def secret_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
