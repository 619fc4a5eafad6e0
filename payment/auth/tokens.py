"""Access tokens: short-lived JWTs for signed-in wallets.

The algorithm is pinned (HS256; the token's own `alg` is never trusted), and every token names its signing key
in the `kid` header. Verification accepts every configured key, signing uses the active one: to rotate, add a
new key, make it active once every instance has it, and drop the old one after the access-token lifetime.

`exp`, `iat`, `nbf`, `iss`, `aud`, `sub` and `jti` are required; the `typ` header is `at+jwt` (RFC 9068) so
no other JWT signed with the same key passes for an access token.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from eth_utils.address import is_checksum_address

from payment.auth.errors import Unauthorized
from payment.auth.principal import Role
from payment.core.config import Environment, Settings, SettingsError

__all__ = ["ALGORITHM", "TOKEN_TYPE", "AccessClaims", "Keyring"]

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - the RFC 9068 media type, not a secret
_REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]
_VERIFIED_CACHE_SIZE = 10_000
_LEEWAY_SECONDS = 5  # clock differences between the instances that sign and verify


@dataclass(frozen=True)
class AccessClaims:
    subject: str  # the wallet address, EIP-55
    role: Role
    token_id: str
    expires_at: datetime


class Keyring:
    """The signing keys of access tokens, by `kid`, and the policy every token is checked against."""

    def __init__(
        self, keys: dict[str, bytes], *, active_kid: str, issuer: str, audience: str, ttl_seconds: int
    ) -> None:
        if active_kid not in keys:
            raise SettingsError(f"the active JWT key {active_kid!r} is not configured")
        self._keys = dict(keys)
        self.active_kid = active_kid
        self.issuer = issuer
        self.audience = audience
        self.ttl = timedelta(seconds=ttl_seconds)
        # Tokens already verified, by their exact text (signature included): a dApp sends the same token on
        # every call for its 15 minutes, and its HMAC and claims need checking once. Only expiry is time-bound
        # afterwards (not-before has passed for good), so a hit re-checks just that.
        self._verified: dict[str, AccessClaims] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        keys = {key.kid: key.secret.get_secret_value().encode() for key in settings.jwt_keys}
        if not keys:
            if settings.environment is not Environment.development:
                raise SettingsError(
                    "no JWT signing key: set MUSDPAY_JWT_KEYS (or MUSDPAY_JWT_KEYS_FILE) to kid:secret, "
                    f"refusing to start in {settings.environment.value}"
                )
            kid = f"dev-{secrets.token_hex(4)}"
            keys = {kid: secrets.token_bytes(32)}
            log.warning(
                "no MUSDPAY_JWT_KEYS configured: signing access tokens with an ephemeral key (%s); "
                "tokens will not survive a restart (development only)",
                kid,
            )
        active = settings.jwt_active_kid or next(iter(keys))
        return cls(
            keys,
            active_kid=active,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=settings.access_token_ttl_seconds,
        )

    @property
    def kids(self) -> list[str]:
        return list(self._keys)

    def issue(self, *, subject: str, role: Role, now: datetime | None = None) -> tuple[str, datetime]:
        """A signed access token for `subject` and when it expires."""
        now = (now or datetime.now(UTC)).replace(microsecond=0)
        expires = now + self.ttl
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "role": role.value,
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self.active_kid, "typ": TOKEN_TYPE}
        token = jwt.encode(claims, self._keys[self.active_kid], algorithm=ALGORITHM, headers=headers)
        return token, expires

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; any defect raises Unauthorized (never anything else)."""
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached.expires_at.timestamp() + _LEEWAY_SECONDS:
                return cached
            del self._verified[token]
            raise Unauthorized("token-expired", "The access token has expired.")
        claims = self._verify(token)
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            self._verified.clear()  # crude but bounded; a burst of new tokens just pays for one check each
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("invalid-token", "The access token is not a well-formed JWT.") from exc
        if header.get("alg") != ALGORITHM:
            raise Unauthorized("invalid-token", f"The access token must be signed with {ALGORITHM}.")
        if header.get("typ") != TOKEN_TYPE:
            raise Unauthorized("invalid-token", "The token is not an access token.")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthorized("invalid-token", "The access token names an unknown signing key (kid).")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": _REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token-expired", "The access token has expired.") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthorized("invalid-token", "The access token is not valid yet.") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("invalid-token", "The access token is for another audience.") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("invalid-token", "The access token is from another issuer.") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthorized("invalid-token", "The access token's signature is not valid.") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized("invalid-token", f"The access token lacks the {exc.claim!r} claim.") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("invalid-token", "The access token is not valid.") from exc
        subject, role = claims.get("sub"), claims.get("role")
        # Access tokens are only ever issued to wallets; operators and admins use API keys.
        if role != Role.wallet.value or not isinstance(subject, str) or not is_checksum_address(subject):
            raise Unauthorized("invalid-token", "The access token's subject or role is not valid.")
        return AccessClaims(
            subject=subject,
            role=Role.wallet,
            token_id=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )
