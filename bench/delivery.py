"""MUSD delivery against a real chain: treasury deliveries per second, and verification latency, each against a
bare baseline measured in the same run.

    .venv/bin/python bench/delivery.py [--deliveries N] [--verifications N] [--output docs/benchmarks.md]

Starts a local chain (anvil, automine) and a fresh SQLite database (the embedded default), then:

- **treasury**: N paid sessions in treasury mode; the delivery worker (`run_once` until every delivery is
  verified) sends and verifies each transfer: caps checked, nonce reserved, signed transaction stored before it
  is broadcast, receipt verified. Baseline: the least a sender can do per transfer, with web3 directly and no
  database: sign with an in-memory nonce, `eth_sendRawTransaction`, `eth_getTransactionReceipt`.
- **verification**: N transfers made first, then N onramp-mode deliveries verified one by one
  (`check_transfer` through the provider pool: receipt, logs, head for confirmations). Baseline: the same
  two reads (`eth_getTransactionReceipt`, `eth_blockNumber`) with AsyncWeb3 directly.

Everything runs in one process and one event loop, calls one after another (anvil in its own process).
Writes its section between the `bench:delivery` markers of the output file.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench`, `payment` and `sandbox` importable
    sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402
from web3 import AsyncHTTPProvider, AsyncWeb3  # noqa: E402

from bench.api import code_version, exact_command, machine, write_section  # noqa: E402
from bench.loadgen import percentile  # noqa: E402
from payment.chain.client import ChainClient  # noqa: E402
from payment.chain.pool import ProviderPool  # noqa: E402
from payment.core import migrations  # noqa: E402
from payment.core.config import Settings  # noqa: E402
from payment.core.db import create_db_engine, make_session_factory, run_db_on  # noqa: E402
from payment.core.metrics import PaymentMetrics  # noqa: E402
from payment.core.statements import direct_on  # noqa: E402
from payment.core.telemetry import Telemetry  # noqa: E402
from payment.delivery.chain import to_units  # noqa: E402
from payment.delivery.models import Delivery  # noqa: E402
from payment.delivery.outbox import enqueue_delivery  # noqa: E402
from payment.delivery.status import DeliveryStatus  # noqa: E402
from payment.delivery.verify import check_transfer  # noqa: E402
from payment.delivery.worker import DeliveryWorker  # noqa: E402
from payment.onramp.models import OnrampSession  # noqa: E402
from sandbox.chain.local import LocalChain, running_chain  # noqa: E402

MARK_START = "<!-- bench:delivery:start -->"
MARK_END = "<!-- bench:delivery:end -->"
AMOUNT = Decimal("12.34")


@dataclass(frozen=True)
class Throughput:
    count: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


@dataclass(frozen=True)
class Latencies:
    samples: list[float]  # seconds

    def ms(self, q: float) -> float:
        return percentile(sorted(self.samples), q / 100) * 1000

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.samples) * 1000


@dataclass(frozen=True)
class Measured:
    treasury: Throughput
    treasury_baseline: Throughput
    verification: Latencies
    verification_baseline: Latencies


def _settings(chain: LocalChain, database_url: str, mode: str) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        chain_id=chain.chain_id,
        rpc_providers=f"local={chain.rpc_url}",
        musd_address=chain.musd_address,
        delivery_mode=mode,
        treasury_key=chain.treasury_key,
        treasury_daily_cap=Decimal(10**9),
    )


def _paid_sessions(
    settings: Settings, factory: sessionmaker[Session], wallets: list[str], hashes: list[str | None]
) -> None:
    now = datetime.now(UTC)
    mode = settings.delivery_mode.value
    rows = [
        OnrampSession(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"musdpay-bench-{mode}-{index}")),  # on chain: a UUID
            stripe_session_id=f"cos_bench_{mode}_{index:06d}",
            status="fulfillment_complete",
            livemode=False,
            wallet_address=wallet,
            source_amount=Decimal("15.00"),
            source_currency="usd",
            destination_currency="musd",
            destination_network="mezo",
            destination_amount=AMOUNT,
            transaction_id=tx_hash,
            request_fingerprint="0" * 64,
            last_event_id="",
            last_event_created=0,
            created_at=now,
            updated_at=now,
        )
        for index, (wallet, tx_hash) in enumerate(zip(wallets, hashes, strict=True))
    ]
    with factory() as db, db.begin():
        db.add_all(rows)
        db.flush()
        connection = direct_on(db.connection())  # the session's transaction
        for row in rows:
            enqueue_delivery(connection, row, mode=settings.delivery_mode, deadline_seconds=3600, now=now)  # type: ignore[arg-type]


async def _treasury(chain: LocalChain, workdir: Path, count: int) -> Throughput:
    settings = _settings(chain, f"sqlite:///{workdir / 'treasury.sqlite'}", "treasury")
    engine = create_db_engine(settings)
    migrations.upgrade(engine)
    factory = make_session_factory(engine)
    wallets = [Account.create().address for _ in range(count)]
    _paid_sessions(settings, factory, wallets, [None] * count)
    telemetry = Telemetry(metrics=PaymentMetrics(CollectorRegistry(), process_collectors=False))
    async with ProviderPool.from_settings(settings, telemetry) as pool:
        worker = DeliveryWorker(
            settings=settings, factory=factory, run_db=run_db_on(engine), chain=ChainClient(pool), telemetry=telemetry
        )
        started = time.perf_counter()
        while await worker.run_once():
            pass
        seconds = time.perf_counter() - started
    with factory() as db:
        verified = db.query(Delivery).filter(Delivery.status == DeliveryStatus.verified.value).count()
    engine.dispose()
    if verified != count:
        raise SystemExit(f"treasury: {verified} of {count} deliveries verified")
    return Throughput(count, seconds)


async def _treasury_baseline(chain: LocalChain, count: int) -> Throughput:
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.rpc_url))
    account = Account.from_key(chain.deployer_key)  # its own account: the treasury's nonces stay untouched
    contract = w3.eth.contract(address=chain.musd_address, abi=chain.musd.contract.abi)
    gas_price = await w3.eth.gas_price
    chain.mint_musd(account.address, to_units(AMOUNT) * count)
    nonce = int(await w3.eth.get_transaction_count(account.address, "pending"))
    started = time.perf_counter()
    for _ in range(count):
        data = contract.encode_abi("transfer", args=[Account.create().address, to_units(AMOUNT)])
        signed = account.sign_transaction(
            {
                "chainId": chain.chain_id,
                "nonce": nonce,
                "to": chain.musd_address,
                "data": data,
                "gas": 100_000,
                "gasPrice": gas_price,
                "value": 0,
            }
        )
        tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.005)
        if receipt["status"] != 1:
            raise SystemExit("baseline transfer reverted")
        nonce += 1
    seconds = time.perf_counter() - started
    await w3.provider.disconnect()
    return Throughput(count, seconds)


async def _verification(chain: LocalChain, count: int) -> tuple[Latencies, Latencies]:
    wallets = [Account.create().address for _ in range(count)]
    hashes = [chain.transfer_musd(wallet, to_units(AMOUNT), wait=False) for wallet in wallets]
    chain.sender.wait(hashes[-1])
    settings = _settings(chain, "sqlite://", "onramp")
    telemetry = Telemetry(metrics=PaymentMetrics(CollectorRegistry(), process_collectors=False))
    ours: list[float] = []
    bare: list[float] = []
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.rpc_url))
    async with ProviderPool.from_settings(settings, telemetry) as pool:
        client = ChainClient(pool)
        for wallet, tx_hash in zip(wallets, hashes, strict=True):  # alternate, so drift hits both alike
            started = time.perf_counter()
            verdict = await check_transfer(
                client, tx_hash=tx_hash, wallet=wallet, token=chain.musd_address,
                expected_units=to_units(AMOUNT), confirmations=1,
            )  # fmt: skip
            ours.append(time.perf_counter() - started)
            if verdict.status is not DeliveryStatus.verified:
                raise SystemExit(f"verification of {tx_hash}: {verdict}")
            started = time.perf_counter()
            await w3.eth.get_transaction_receipt(tx_hash)
            await w3.eth.block_number
            bare.append(time.perf_counter() - started)
    await w3.provider.disconnect()
    return Latencies(ours), Latencies(bare)


async def measure(chain: LocalChain, args: argparse.Namespace) -> Measured:
    with tempfile.TemporaryDirectory(prefix="musdpay-bench-delivery-") as workdir:
        baseline = await _treasury_baseline(chain, args.deliveries)
        treasury = await _treasury(chain, Path(workdir), args.deliveries)
    verification, verification_baseline = await _verification(chain, args.verifications)
    return Measured(treasury, baseline, verification, verification_baseline)


def report(args: argparse.Namespace, m: Measured, command: str, code: str) -> str:
    at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    v, vb = m.verification, m.verification_baseline
    lines = [
        MARK_START,
        "## MUSD delivery: treasury throughput and verification latency",
        "",
        f"Measured {at} at {code} on {machine()}; anvil (automine) on loopback, SQLite (WAL) for the worker.",
        "",
        "```sh",
        command,
        "```",
        "",
        f"### Treasury deliveries ({m.treasury.count} paid sessions, one worker)",
        "",
        "| | deliveries/s | ms per delivery |",
        "|---|---:|---:|",
        f"| musdpay worker (caps, nonce reservation, stored signed tx, broadcast, verified receipt) | "
        f"{m.treasury.per_second:.1f} | {1000 / m.treasury.per_second:.2f} |",
        f"| baseline: sign + send + receipt, web3 directly, no database | {m.treasury_baseline.per_second:.1f} | "
        f"{1000 / m.treasury_baseline.per_second:.2f} |",
        f"| **musdpay / baseline** | **{m.treasury.per_second / m.treasury_baseline.per_second:.2f}** | |",
        "",
        "The worker does, per delivery, five more chain reads than the baseline (MUSD and BTC balances, pending "
        "and latest nonce, gas price) and four committed database transactions (nonce, signed transaction, "
        "broadcast, outcome): the price of caps and of never sending twice.",
        "",
        f"### Verification of an onramp delivery ({len(v.samples)} transfers, one at a time)",
        "",
        "| | p50 (ms) | p99 (ms) | mean (ms) |",
        "|---|---:|---:|---:|",
        f"| musdpay `check_transfer` through the provider pool | {v.ms(50):.2f} | {v.ms(99):.2f} | {v.mean_ms:.2f} |",
        f"| baseline: `eth_getTransactionReceipt` + `eth_blockNumber`, AsyncWeb3 directly | {vb.ms(50):.2f} | "
        f"{vb.ms(99):.2f} | {vb.mean_ms:.2f} |",
        f"| **musdpay - baseline** | **{v.ms(50) - vb.ms(50):+.2f}** | {v.ms(99) - vb.ms(99):+.2f} | |",
        "",
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--deliveries", type=int, default=300, help="treasury deliveries (default 300)")
    parser.add_argument("--verifications", type=int, default=500, help="verified transfers (default 500)")
    parser.add_argument("--output", default="docs/benchmarks.md", help="markdown file to update; '-' for none")
    args = parser.parse_args(argv)
    if args.deliveries < 1 or args.verifications < 1:
        parser.error("--deliveries and --verifications must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command, code = exact_command(), code_version()
    print(f"bench/delivery.py: {machine()}", flush=True)
    with running_chain() as chain:
        measured = asyncio.run(measure(chain, args))
    section = report(args, measured, command, code)
    print(section, end="")
    if args.output != "-":
        write_section(Path(args.output), section, MARK_START, MARK_END)
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
