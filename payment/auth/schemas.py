"""Request and response bodies of /api/v1/auth and /api/v1/admin (camelCase JSON)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from payment.auth.principal import Role
from payment.auth.siwe import MAX_MESSAGE_LENGTH

__all__ = [
    "ApiKeyOut",
    "AuditEventOut",
    "CreateApiKeyRequest",
    "CreatedApiKeyOut",
    "MeOut",
    "NonceOut",
    "RefreshRequest",
    "RotateApiKeyRequest",
    "TokenOut",
    "VerifyRequest",
]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class NonceOut(_Camel):
    nonce: str
    expires_at: datetime
    chain_id: int = Field(description="The chain id the message must name (Mezo: 31611 testnet, 31612 mainnet)")


class VerifyRequest(_Camel):
    message: str = Field(max_length=MAX_MESSAGE_LENGTH, description="The EIP-4361 message, exactly as signed")
    signature: str = Field(max_length=4100, description="0x-prefixed hex: 65-byte ECDSA, or an EIP-1271 signature")


class RefreshRequest(_Camel):
    refresh_token: str = Field(max_length=128)


class TokenOut(_Camel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires")
    expires_at: datetime
    refresh_token: str = Field(description="Single use: /auth/refresh returns a new one; presenting it twice logs out")
    refresh_expires_at: datetime
    wallet_address: str


class MeOut(_Camel):
    kind: str
    subject: str
    role: Role


class CreateApiKeyRequest(_Camel):
    name: str = Field(min_length=1, max_length=100)
    role: Role = Field(description="operator (servers, dApp backends) or admin; wallet is for sign-in only")


class RotateApiKeyRequest(_Camel):
    grace_seconds: int | None = Field(default=None, ge=0, le=30 * 86400)


class ApiKeyOut(_Camel):
    id: str
    name: str
    role: Role
    status: str = Field(description="active, rotating (valid until expiresAt), expired or revoked")
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None
    last_used_at: datetime | None = Field(description="To the minute: written at most once a minute")


class CreatedApiKeyOut(ApiKeyOut):
    key: str = Field(description="The whole key, shown this once; only its hash is stored")


class AuditEventOut(_Camel):
    id: int
    at: datetime
    actor: str
    actor_role: str | None
    action: str
    target: str | None
    origin: str | None
    detail: str | None
