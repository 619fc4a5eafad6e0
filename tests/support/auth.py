"""Credentials for tests: operator/admin API keys created in the database, and wallet access tokens."""

from __future__ import annotations

from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session, sessionmaker

from payment.auth import apikeys
from payment.auth.audit import Actor
from payment.auth.principal import Role
from payment.auth.tokens import Keyring
from payment.core.config import Settings

__all__ = ["JWT_KEYS", "TEST_ACTOR", "api_key", "bearer", "wallet_account", "wallet_token"]

# kid:secret pairs for MUSDPAY_JWT_KEYS in tests (test only; 32+ bytes each).
JWT_KEYS = "test-1:musdpay-tests-jwt-secret-0123456789abcdef"
TEST_ACTOR = Actor(name="test:fixtures", role="admin", origin="test")


def api_key(factory: sessionmaker[Session], role: Role = Role.operator, name: str = "tests") -> str:
    """A fresh API key of `role`, created directly in the database."""
    return apikeys.create_key(factory=factory, name=name, role=role, actor=TEST_ACTOR).key


def wallet_token(settings: Settings, address: str) -> str:
    """An access token for `address`, as /auth/verify would issue it (signed with the settings' active key)."""
    token, _ = Keyring.from_settings(settings).issue(subject=address, role=Role.wallet)
    return token


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def wallet_account(seed: int) -> LocalAccount:
    """A deterministic local account (never a funded or real key)."""
    account: LocalAccount = Account.from_key((seed + 0x1000).to_bytes(32, "big"))
    return account
