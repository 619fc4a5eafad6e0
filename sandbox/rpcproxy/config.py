"""Settings of one RPC fault proxy; the CLI builds it from flags, tests directly. Nothing reads the environment."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProxyConfig"]


@dataclass(frozen=True)
class ProxyConfig:
    upstream: str  # JSON-RPC URL requests are forwarded to
    host: str = "127.0.0.1"
    port: int = 0  # JSON-RPC and control API; 0: a free port. Closed while the proxy is "down".
    control_port: int = 0  # control API only, always listening, so a "down" proxy can still be healed
    name: str = "rpc"  # the provider this proxy plays (e.g. "spectrum"), reported in stats and health
    seed: int = 0  # initial seed of the fault rates' randomness
    upstream_timeout: float = 30.0  # seconds for one upstream exchange before answering 502
    upstream_connections: int = 256  # keep-alive connections to the upstream
