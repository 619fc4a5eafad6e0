"""The caller of a request: a wallet signed in with SIWE, an API key, or nobody."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ANONYMOUS", "Principal", "Role"]


class Role(StrEnum):
    wallet = "wallet"  # an end user: its own sessions only
    operator = "operator"  # a server or an operator: every session, on behalf of any wallet
    admin = "admin"  # everything an operator may do, and API key management


@dataclass(frozen=True)
class Principal:
    """Who is calling. `subject` is the wallet address (EIP-55) or the API key id; "" when anonymous."""

    kind: str  # anonymous | wallet | api_key
    subject: str
    role: Role | None = None
    family: str = ""  # API keys: the id of the first key of its rotation line (stable across rotations)

    @property
    def authenticated(self) -> bool:
        return self.role is not None

    @property
    def idempotency_scope(self) -> str:
        # A rotated API key is the same client: its Idempotency-Keys stay valid across the rotation.
        return f"{self.kind}:{self.family or self.subject}"

    def owns(self, wallet_address: str) -> bool:
        return self.kind == "wallet" and self.subject.lower() == wallet_address.lower()

    def may_see_client_secret(self, wallet_address: str) -> bool:
        return self.owns(wallet_address)


ANONYMOUS = Principal(kind="anonymous", subject="")
