"""Tables of authentication: API keys, refresh tokens, sign-in nonces, and the audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payment.core.db import Base, UTCDateTime

__all__ = ["ApiKey", "AuditEvent", "RefreshToken", "SiweNonce"]


class ApiKey(Base):
    """An API key; the secret itself is never stored, only its SHA-256 (see apikeys.py)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the key id, public, part of the key
    family_id: Mapped[str] = mapped_column(String(32), index=True)  # first key of the rotation line
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # set by rotation: end of the grace
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replaced_by: Mapped[str | None] = mapped_column(String(32))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # written at most once a minute


class RefreshToken(Base):
    """One refresh token of a sign-in's family; each use rotates it, a second use revokes the family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    subject: Mapped[str] = mapped_column(String(42))  # the wallet address, EIP-55
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the family's: sign in again after it
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # rotated: presenting it again is reuse
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SiweNonce(Base):
    """A sign-in nonce handed out by /auth/nonce; consumed once by a successful /auth/verify."""

    __tablename__ = "siwe_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    """Who did what, when, from where: key management, admin actions, sign-ins and token reuse."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))  # "api_key:<id>", "wallet:<address>", "cli:<user>@<host>"
    actor_role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))  # e.g. api_key.create, auth.sign_in, auth.refresh_reused
    target: Mapped[str | None] = mapped_column(String(128))
    origin: Mapped[str | None] = mapped_column(String(64))  # client IP, or "cli"
    detail: Mapped[str | None] = mapped_column(Text)  # JSON object, never a secret

    __table_args__ = (Index("ix_audit_events_at", "at"),)
