"""Stripe-looking identifiers and secrets.

Ids only have to be unique, so they come from a fast non-cryptographic generator seeded from the OS (this
sits on the session-create hot path). Secrets a client would check (client secrets, webhook signing
secrets) come from `secrets`.
"""

from __future__ import annotations

import random
import secrets
import string

__all__ = ["new_id", "new_secret", "new_tx_hash", "new_webhook_secret"]

_ALPHABET = string.ascii_letters + string.digits
_fast = random.Random(secrets.randbits(128))


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(_fast.choices(_ALPHABET, k=length))


def new_secret(length: int = 24) -> str:
    # Map random bytes onto base62; the bias of `% 62` on 256 values is irrelevant for a test secret.
    return "".join(_ALPHABET[b % 62] for b in secrets.token_bytes(length))


def new_webhook_secret() -> str:
    return "whsec_" + new_secret(32)


def new_tx_hash() -> str:
    return "0x" + secrets.token_hex(32)
