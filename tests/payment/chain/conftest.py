"""Two fault proxies ("spectrum" and "public") in front of one fresh anvil, and pools built over them.

Tests are synchronous and drive the pool on one event loop (`run`), so the proxies' control calls sit between
awaited steps; the pool's background poller is not started unless a test asks for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from payment.chain.pool import ProviderPool
from payment.core.config import RpcProvider, Settings
from payment.core.metrics import PaymentMetrics
from payment.core.telemetry import Telemetry, build_tracer_provider
from sandbox.chain.local import LocalChain, running_chain
from sandbox.rpcproxy.server import RunningProxy, running_proxy
from tests.sandbox.chain.support import require_anvil

# Spectrum-style: the key is a path segment. The public fallback carries one in its query string.
SPECTRUM_KEY = "Sk9vT3eXq7Lm2Rp4Wz8Yb6Nc"
PUBLIC_KEY = "pub-7f3a9c2e1b5d4a6f8e0c"

POLICY: dict[str, Any] = {
    "rpc_timeout_seconds": 1.0,
    "rpc_max_attempts": 3,
    "rpc_poll_interval_seconds": 0.05,
    "rpc_unreachable_after": 2,
    "rpc_out_of_sync_blocks": 3,
    "rpc_recover_after": 2,
}


@dataclass
class Rig:
    chain: LocalChain
    spectrum: RunningProxy
    public: RunningProxy
    spans: InMemorySpanExporter
    telemetry: Telemetry
    run: Callable[[Coroutine[Any, Any, Any]], Any]
    pools: list[ProviderPool]

    @property
    def registry(self) -> CollectorRegistry:
        return self.telemetry.metrics.registry

    def spectrum_url(self) -> str:
        return f"{self.spectrum.url}/{SPECTRUM_KEY}/mezo/testnet/"

    def public_url(self) -> str:
        return f"{self.public.url}/rpc?apikey={PUBLIC_KEY}"

    def settings(self, providers: list[tuple[str, str]] | None = None, **overrides: Any) -> Settings:
        pairs = providers or [("spectrum", self.spectrum_url()), ("public", self.public_url())]
        values = {**POLICY, **overrides}
        return Settings(
            environment="test",
            chain_id=self.chain.chain_id,
            rpc_providers=[RpcProvider(name=name, url=SecretStr(url)) for name, url in pairs],
            **values,
        )

    def pool(self, providers: list[tuple[str, str]] | None = None, **overrides: Any) -> ProviderPool:
        pool = ProviderPool.from_settings(self.settings(providers, **overrides), self.telemetry)
        self.pools.append(pool)
        return pool

    def calls(self, proxy: RunningProxy, method: str | None = None) -> int:
        """JSON-RPC calls the proxy received since its last reset (of one method, or of any but eth_chainId)."""
        methods: dict[str, int] = proxy.stats()["methods"]
        if method is not None:
            return methods.get(method, 0)
        return sum(count for name, count in methods.items() if name != "eth_chainId")

    def reset_stats(self) -> None:
        self.spectrum.reset_stats()
        self.public.reset_stats()

    def finished_spans(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def eventually(self, condition: Callable[[], object], timeout: float = 10.0) -> None:
        """Let the loop run (background poller) until `condition` holds; fail after `timeout` seconds."""

        async def wait() -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out after {timeout}s waiting for {condition}")
                await asyncio.sleep(0.01)

        self.run(wait())


@pytest.fixture
def chain() -> Iterator[LocalChain]:
    require_anvil()
    with running_chain() as running:
        yield running


@pytest.fixture
def rig(chain: LocalChain) -> Iterator[Rig]:
    spans = InMemorySpanExporter()
    telemetry = Telemetry(
        metrics=PaymentMetrics(CollectorRegistry(), process_collectors=False),
        tracer_provider=build_tracer_provider(
            sample_ratio=1.0, service_name="musdpay-test", processors=[SimpleSpanProcessor(spans)]
        ),
        exporting=True,  # to memory: without an exporter, no child span is made
    )
    with (
        running_proxy(chain.rpc_url, name="spectrum") as spectrum,
        running_proxy(chain.rpc_url, name="public") as public,
        asyncio.Runner() as runner,
    ):
        rig = Rig(chain, spectrum, public, spans, telemetry, runner.run, [])
        try:
            yield rig
        finally:
            for pool in rig.pools:
                runner.run(pool.aclose())
            telemetry.shutdown()
