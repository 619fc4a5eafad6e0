"""The `musdpay` command: the one place that wires every part of the project together."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

import click

__all__ = ["main"]

# Development-only credentials of the local stack; the emulator accepts them, nothing real does.
DEV_STRIPE_KEY = "sk_test_musdpay_local_development"
DEV_WEBHOOK_SECRET = "whsec_musdpay_local_development"  # noqa: S105 - local emulator only


@click.group()
def main() -> None:
    """musdpay: buy MUSD on Mezo with a card, and the platform that watches it."""


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: MUSDPAY_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: MUSDPAY_PORT or 3001).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the payment API."""
    import uvicorn

    from payment.core.config import get_settings

    settings = get_settings()
    scratch = None
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker is its own process: metrics must be summed across them through a shared directory.
        scratch = tempfile.mkdtemp(prefix="musdpay-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = scratch
    try:
        uvicorn.run(
            "payment.api:create_served_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
            proxy_headers=False,
            server_header=False,
            log_config=None,  # the app configures JSON logging itself, in every worker
            access_log=False,
        )
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from payment.core import migrations
    from payment.core.config import get_settings
    from payment.core.db import create_db_engine

    engine = create_db_engine(get_settings())
    try:
        migrations.upgrade(engine, revision)
        current, head = migrations.current_and_head(engine)
    finally:
        engine.dispose()
    click.echo(f"database at revision {current} (head {head})")


@main.group()
def sandbox() -> None:
    """Local stand-ins for external services."""


@sandbox.command("stripe")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=12111, show_default=True)
@click.option("--webhook-url", "webhook_urls", multiple=True, help="Endpoint to deliver events to (repeatable).")
@click.option("--webhook-secret", default=None, help="Signing secret (whsec_...); generated when omitted.")
@click.option("--api-key", default=None, help="Accept only this sk_test_ key (default: any sk_test_ key).")
@click.option(
    "--auto-advance",
    type=click.Choice(["requires_payment", "fulfillment_processing", "fulfillment_complete", "rejected"]),
    default=None,
    help="Drive every new session to this status automatically.",
)
@click.option("--auto-advance-delay", type=float, default=0.2, show_default=True)
def sandbox_stripe(
    host: str,
    port: int,
    webhook_urls: tuple[str, ...],
    webhook_secret: str | None,
    api_key: str | None,
    auto_advance: str | None,
    auto_advance_delay: float,
) -> None:
    """Run the Stripe Crypto Onramp emulator."""
    from sandbox.stripe.config import EmulatorConfig
    from sandbox.stripe.server import run

    run(
        EmulatorConfig(
            host=host,
            port=port,
            webhook_urls=list(webhook_urls),
            webhook_secret=webhook_secret,
            api_key=api_key,
            auto_advance=auto_advance,
            auto_advance_delay=auto_advance_delay,
        )
    )


@sandbox.command("chain")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8545, show_default=True, help="RPC port (0: a free one, printed).")
@click.option("--block-time", type=float, default=None, help="Mine a block every N seconds (too).")
@click.option("--no-automine", is_flag=True, help="Do not mine a block per transaction.")
def sandbox_chain(host: str, port: int, block_time: float | None, no_automine: bool) -> None:
    """Run a local Mezo stand-in (anvil, chain id 31611) with MUSD deployed and a funded treasury."""
    from sandbox.chain.config import ChainConfig
    from sandbox.chain.server import run

    sys.exit(run(ChainConfig(host=host, port=port, block_time=block_time, automine=not no_automine)))


@sandbox.command("rpc-proxy")
@click.option("--upstream", required=True, help="JSON-RPC URL to forward to (e.g. the local chain's).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, show_default=True, help="Proxy port (0: a free one, printed).")
@click.option("--control-port", type=int, default=0, show_default=True, help="Control-only port, up even when 'down'.")
@click.option("--name", default="rpc", show_default=True, help="Provider name reported in stats.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault rates' randomness.")
def sandbox_rpc_proxy(upstream: str, host: str, port: int, control_port: int, name: str, seed: int) -> None:
    """Run a JSON-RPC proxy that injects faults (latency, 5xx, 429, errors, stalls, drops...) on demand."""
    from sandbox.rpcproxy.config import ProxyConfig
    from sandbox.rpcproxy.server import run

    run(ProxyConfig(upstream=upstream, host=host, port=port, control_port=control_port, name=name, seed=seed))


@main.command()
@click.option("--port", type=int, default=3001, show_default=True, help="API port.")
@click.option("--stripe-port", type=int, default=12111, show_default=True, help="Stripe emulator port.")
@click.option("--auto-advance", default=None, help="Passed to the emulator (e.g. fulfillment_complete).")
def dev(port: int, stripe_port: int, auto_advance: str | None) -> None:
    """Run the local stack: the Stripe emulator and the API wired to it (SQLite, development mode)."""
    env = dict(os.environ)
    env.setdefault("MUSDPAY_ENVIRONMENT", "development")
    env.setdefault("MUSDPAY_STRIPE_API_BASE", f"http://127.0.0.1:{stripe_port}")
    env.setdefault("MUSDPAY_STRIPE_SECRET_KEY", DEV_STRIPE_KEY)
    env.setdefault("MUSDPAY_STRIPE_WEBHOOK_SECRETS", DEV_WEBHOOK_SECRET)
    secret = env["MUSDPAY_STRIPE_WEBHOOK_SECRETS"].split(",")[0].strip()
    emulator = [
        sys.executable, "-m", "musdpay", "sandbox", "stripe",
        "--port", str(stripe_port),
        "--webhook-url", f"http://127.0.0.1:{port}/api/v1/webhooks/stripe",
        "--webhook-secret", secret,
    ]  # fmt: skip
    if auto_advance:
        emulator += ["--auto-advance", auto_advance]
    api = [sys.executable, "-m", "musdpay", "serve", "--port", str(port)]
    children = [subprocess.Popen(emulator, env=env), subprocess.Popen(api, env=env)]
    click.echo(f"API on http://127.0.0.1:{port} (docs at /docs), Stripe emulator on http://127.0.0.1:{stripe_port}")

    def stop(_signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        stop(signal.SIGTERM, None)
        for child in children:
            child.wait(timeout=30)
    codes = {child.returncode for child in children}
    sys.exit(0 if codes <= {0, -signal.SIGTERM} else 1)
