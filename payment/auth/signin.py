"""Wallet sign-in: nonces, SIWE verification, and refresh tokens that rotate on every use.

    POST /auth/nonce    -> a nonce, single use, expiring after `siwe_nonce_ttl_seconds`
    POST /auth/verify   -> message checks, nonce unused, signature (ECDSA or EIP-1271) -> access + refresh token
    POST /auth/refresh  -> the presented refresh token is spent and replaced (same family, same absolute expiry)
    POST /auth/logout   -> the family of the presented refresh token is revoked

A refresh token presented a second time means two parties hold it (one stole it): the whole family is revoked
in the same transaction, and both must sign in again. Refresh tokens are stored as SHA-256 hashes (256-bit
random secrets need no slow KDF; see apikeys.py). Access tokens are stateless and live until they expire
(`access_token_ttl_seconds`, 15 minutes by default), which bounds what revocation cannot reach.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from payment.auth import audit
from payment.auth.errors import Unauthorized
from payment.auth.models import RefreshToken, SiweNonce
from payment.auth.principal import Role
from payment.auth.signatures import ChainUnavailable, EthCall, is_valid_signature
from payment.auth.siwe import SiweMessage, check_message, parse_message
from payment.auth.tokens import Keyring
from payment.core.config import Settings
from payment.core.db import core_transaction
from payment.core.problems import UpstreamProblem

__all__ = ["Nonce", "TokenPair", "issue_nonce", "logout", "refresh", "sign_in"]

T = TypeVar("T")
RunDb = Callable[..., Awaitable[Any]]

REFRESH_PREFIX = "mrt_"
_REFRESH = re.compile(r"^mrt_[A-Za-z0-9_-]{43}$")
_SIGNATURE = re.compile(r"^0x([0-9a-fA-F]{2}){1,2048}$")
_NONCE_RETENTION = timedelta(hours=1)  # used or expired nonces are deleted this long after they expire


@dataclass(frozen=True)
class Nonce:
    value: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenPair:
    subject: str
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_nonce(*, factory: sessionmaker[Session], ttl_seconds: int, now: datetime | None = None) -> Nonce:
    now = _now(now)
    nonce = Nonce(secrets.token_hex(16), now + timedelta(seconds=ttl_seconds))
    with core_transaction(factory) as conn:
        conn.execute(delete(SiweNonce).where(SiweNonce.expires_at < now - _NONCE_RETENTION))
        conn.execute(insert(SiweNonce).values(nonce=nonce.value, created_at=now, expires_at=nonce.expires_at))
    return nonce


def _nonce_refused() -> Unauthorized:
    return Unauthorized("siwe-nonce-invalid", "The sign-in nonce is unknown, already used, or expired.")


def _check_nonce(*, factory: sessionmaker[Session], nonce: str, now: datetime) -> None:
    with core_transaction(factory) as conn:
        row = conn.execute(select(SiweNonce.used_at, SiweNonce.expires_at).where(SiweNonce.nonce == nonce)).first()
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise _nonce_refused()


def _issue(
    conn: Connection, keyring: Keyring, *, subject: str, family_id: str, expires_at: datetime, now: datetime
) -> TokenPair:
    refresh_token = REFRESH_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        insert(RefreshToken).values(
            id=str(uuid.uuid4()),
            family_id=family_id,
            subject=subject,
            token_hash=_hash(refresh_token),
            created_at=now,
            expires_at=expires_at,
        )
    )
    access_token, access_expires = keyring.issue(subject=subject, role=Role.wallet, now=now)
    return TokenPair(subject, access_token, access_expires, refresh_token, expires_at)


def _complete(
    *,
    factory: sessionmaker[Session],
    keyring: Keyring,
    message: SiweMessage,
    refresh_ttl: timedelta,
    origin: str | None,
    now: datetime,
) -> TokenPair:
    with core_transaction(factory) as conn:
        consumed = conn.execute(
            update(SiweNonce)
            .where(SiweNonce.nonce == message.nonce, SiweNonce.used_at.is_(None), SiweNonce.expires_at > now)
            .values(used_at=now)
        ).rowcount
        if consumed != 1:  # another request with the same nonce won the race
            raise _nonce_refused()
        family_id = str(uuid.uuid4())
        pair = _issue(
            conn, keyring, subject=message.address, family_id=family_id, expires_at=now + refresh_ttl, now=now
        )
        audit.record(
            conn,
            actor=audit.Actor(f"wallet:{message.address}", Role.wallet.value, origin),
            action="auth.sign_in",
            target=message.address,
            detail={"family": family_id, "chain_id": message.chain_id, "domain": message.domain},
            at=now,
        )
    return pair


async def sign_in(
    *,
    run_db: RunDb,
    factory: sessionmaker[Session],
    keyring: Keyring,
    eth_call: EthCall,
    settings: Settings,
    message_text: str,
    signature: str,
    origin: str | None,
    now: datetime | None = None,
) -> TokenPair:
    """Verify a signed EIP-4361 message and open a session; every refusal is Unauthorized."""
    now = _now(now)
    message = parse_message(message_text)
    check_message(
        message,
        domains=settings.siwe_domains,
        chain_id=settings.chain_id,
        now=now,
        max_age=timedelta(seconds=settings.siwe_nonce_ttl_seconds),
        skew=timedelta(seconds=settings.siwe_clock_skew_seconds),
    )
    # Before the signature (which may cost an RPC call): a replayed or made-up nonce stops here.
    await run_db(_check_nonce, factory=factory, nonce=message.nonce, now=now)
    if not _SIGNATURE.fullmatch(signature):
        raise Unauthorized("siwe-signature-invalid", "The signature must be 0x-prefixed hex.")
    try:
        valid = await is_valid_signature(message_text, bytes.fromhex(signature[2:]), message.address, eth_call)
    except ChainUnavailable as exc:
        raise UpstreamProblem(
            503, "signature-check-unavailable", "The chain could not check the signature.", retry_after=5
        ) from exc
    if not valid:
        raise Unauthorized("siwe-signature-invalid", f"The signature is not {message.address}'s.")
    pair: TokenPair = await run_db(
        _complete,
        factory=factory,
        keyring=keyring,
        message=message,
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
        origin=origin,
        now=now,
    )
    return pair


def _invalid_refresh(detail: str = "The refresh token is not valid.") -> Unauthorized:
    return Unauthorized("invalid-refresh-token", detail)


def _revoke_family(conn: Connection, family_id: str, now: datetime) -> None:
    conn.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def refresh(
    *,
    factory: sessionmaker[Session],
    keyring: Keyring,
    presented: str,
    origin: str | None,
    now: datetime | None = None,
) -> TokenPair:
    """Spend a refresh token for a new pair; a token spent before revokes its family (and is refused)."""
    now = _now(now)
    if not _REFRESH.fullmatch(presented):
        raise _invalid_refresh("The refresh token is malformed.")
    pair: TokenPair | None = None
    with core_transaction(factory) as conn:
        row = conn.execute(select(RefreshToken.__table__).where(RefreshToken.token_hash == _hash(presented))).first()
        if row is None:
            raise _invalid_refresh()
        if row.revoked_at is not None:
            raise _invalid_refresh("The refresh token has been revoked; sign in again.")
        if row.expires_at <= now:
            raise _invalid_refresh("The refresh token has expired; sign in again.")
        claimed = 0
        if row.used_at is None:
            claimed = conn.execute(
                update(RefreshToken)
                .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
                .values(used_at=now)
            ).rowcount
        if claimed == 1:
            pair = _issue(
                conn, keyring, subject=row.subject, family_id=row.family_id, expires_at=row.expires_at, now=now
            )
        else:  # spent before (or by a concurrent request): the family is compromised
            _revoke_family(conn, row.family_id, now)
            audit.record(
                conn,
                actor=audit.Actor(f"wallet:{row.subject}", Role.wallet.value, origin),
                action="auth.refresh_reused",
                target=row.subject,
                detail={"family": row.family_id},
                at=now,
            )
    if pair is None:  # raised after the commit, so the revocation stands
        raise Unauthorized("refresh-token-reused", "This refresh token was already used; all its sessions are revoked.")
    return pair


def logout(*, factory: sessionmaker[Session], presented: str, origin: str | None, now: datetime | None = None) -> None:
    """Revoke the family of a refresh token; unknown tokens are ignored (logout reveals nothing)."""
    now = _now(now)
    if not _REFRESH.fullmatch(presented):
        return
    with core_transaction(factory) as conn:
        row = conn.execute(
            select(RefreshToken.family_id, RefreshToken.subject, RefreshToken.revoked_at).where(
                RefreshToken.token_hash == _hash(presented)
            )
        ).first()
        if row is None or row.revoked_at is not None:
            return
        _revoke_family(conn, row.family_id, now)
        audit.record(
            conn,
            actor=audit.Actor(f"wallet:{row.subject}", Role.wallet.value, origin),
            action="auth.logout",
            target=row.subject,
            detail={"family": row.family_id},
            at=now,
        )
