"""What authentication needs at run time, built once per application from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from payment.auth.signatures import EthCall, web3_eth_call
from payment.auth.tokens import Keyring
from payment.core.config import Settings

__all__ = ["AuthRuntime"]


@dataclass
class AuthRuntime:
    keyring: Keyring
    eth_call: EthCall  # for EIP-1271; install_auth puts the app's provider pool here (web3 on one URL until then)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthRuntime:
        """Raises SettingsError outside development when no JWT key is configured."""
        provider = settings.rpc_providers[0]
        return cls(
            keyring=Keyring.from_settings(settings),
            eth_call=web3_eth_call(provider.url.get_secret_value(), timeout=settings.rpc_timeout_seconds),
        )
