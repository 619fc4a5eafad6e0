"""Throughput and latency of the payment API against a bare FastAPI baseline, measured in the same run.

    .venv/bin/python bench/api.py [--duration S] [--concurrency N] [--database sqlite|postgresql]
                                  [--output docs/benchmarks.md] [--rounds R] [--warmup S] [--max-requests N]
                                  [--scenario NAME] [--api-env NAME=VALUE] [--profile DIR]
                                  [--against baseline|telemetry-off]

Starts, each as its own process on a free loopback port: the Stripe onramp emulator (shared), the real API
(`musdpay serve`) and the baseline (bench/baseline_app.py under uvicorn with the same options). Then, for each
scenario, loads the baseline and the API alternately (ABBA over the rounds, to spread drift on a 2-core box)
from a separate load-generator process (bench/loadgen.py), keeps the best round of each, and writes the result
with the exact command between the `bench:api` markers of the output file (other benchmarks keep their own
sections). Exit code 0 even when a target is missed: this is a measurement; the verdicts are in the output.

Scenarios:
- session-create: `POST /api/v1/onramp/sessions`, a fresh Idempotency-Key each, against the emulator;
- webhook-ingest: `POST /api/v1/webhooks/stripe`, `crypto.onramp_session_updated` events with fresh ids for
  sessions created through the API beforehand, signed with the API's secret.

`--against telemetry-off` measures the cost of telemetry instead: the second app is musdpay itself with
`MUSDPAY_TELEMETRY_ENABLED=false`, and the result goes between the `bench:telemetry` markers.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable (also in the spawned load generator)
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import stripe  # noqa: E402

from bench.loadgen import (  # noqa: E402
    LoadResult,
    LoadSpec,
    percentile,
    run_alternating_in_process,
    run_in_process,
)

API_KEY = "sk_test_musdpay_bench"
WEBHOOK_SECRET = "whsec_musdpay_bench_0123456789"
# The buyer's wallet signs in (a JWT, checked without the database): what a dApp in the browser sends. The
# baseline ignores the header, so both apps parse the same request bytes.
JWT_KEYS = "bench-1:musdpay-bench-jwt-secret-0123456789abcdef"
WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"
CREATE_BODY = json.dumps({"walletAddress": WALLET, "sourceAmount": "100.00"}).encode()
WEBHOOK_SESSIONS = 20  # sessions the webhook events are spread over
PR_SET_PDEATHSIG = 1  # prctl(2)
UNREACHABLE_RATE_LIMITS = "default=1000000000/60,create_session=1000000000/60,webhook=1000000000/60"
MARK_START = "<!-- bench:api:start -->"
MARK_END = "<!-- bench:api:end -->"
SCENARIOS = ("session-create", "webhook-ingest")
APPS = ("musdpay", "baseline")
PATHS = {
    ("musdpay", "session-create"): "/api/v1/onramp/sessions",
    ("musdpay", "webhook-ingest"): "/api/v1/webhooks/stripe",
    ("baseline", "session-create"): "/sessions",
    ("baseline", "webhook-ingest"): "/webhook",
}


@dataclass(frozen=True)
class Target:
    min_throughput: float  # requests per second
    max_p99_ms: float
    min_ratio: float  # of the baseline's throughput


TARGETS = {
    "session-create": Target(min_throughput=300, max_p99_ms=50, min_ratio=0.8),
    "webhook-ingest": Target(min_throughput=800, max_p99_ms=50, min_ratio=0.8),
}


@dataclass(frozen=True)
class Comparison:
    """What the API is measured against in the same run: the bare baseline, or itself with telemetry off."""

    name: str
    marks: tuple[str, str]
    title: str
    labels: dict[str, str]  # app -> how the report names it
    min_ratio: float | None  # None: the scenario's own target
    max_added_p99_ms: float | None


COMPARISONS = {
    "baseline": Comparison(
        "baseline", (MARK_START, MARK_END), "Payment API: throughput and latency",
        {"musdpay": "musdpay", "baseline": "baseline"}, None, None,
    ),
    "telemetry-off": Comparison(
        "telemetry-off", ("<!-- bench:telemetry:start -->", "<!-- bench:telemetry:end -->"),
        "Payment API: the cost of telemetry (traces, metrics, logs on against off)",
        {"musdpay": "telemetry on", "baseline": "telemetry off"}, 0.9, 1.0,
    ),
}  # fmt: skip


def path_of(comparison: str, app: str, scenario: str) -> str:
    """The second app is the bare baseline, or musdpay itself (telemetry off) on the same routes."""
    return PATHS[("musdpay" if comparison == "telemetry-off" else app, scenario)]


# --- child processes ---------------------------------------------------------------------------------------


@dataclass
class Child:
    """A server process in its own session (so its whole group can be signalled), output to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if not self.alive():
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)


class Children:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.items: list[Child] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                args,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        child = Child(name, popen, log_path)
        self.items.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.items):
            child.stop()


def _load_libc() -> Any:
    with contextlib.suppress(OSError):
        return ctypes.CDLL(None)  # the running interpreter's symbols, libc's prctl among them
    return None


_LIBC = _load_libc() if sys.platform == "linux" else None  # loaded here: the pre-exec hook must not search


def _die_with_parent() -> None:
    """In the child before exec: be SIGKILLed when the bench dies, even by SIGKILL (Linux only)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, child: Child, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} not ready at {url} after {timeout}s:\n{child.log_tail()}")
        time.sleep(0.1)


def base_env() -> dict[str, str]:
    """This environment without MUSDPAY_ settings of the caller's shell, which would change what is measured."""
    return {name: value for name, value in os.environ.items() if not name.startswith(("MUSDPAY_", "BENCH_"))}


UVICORN_OPTIONS = [  # what `musdpay serve` passes to uvicorn.run; the baseline gets the same
    "--host", "127.0.0.1", "--no-proxy-headers", "--no-server-header", "--no-access-log",
    "--log-level", "info", "--timeout-graceful-shutdown", "15",
]  # fmt: skip


# --- databases ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def databases(kind: str, workdir: Path, postgres_url: str) -> Iterator[tuple[str, str, str]]:
    """(musdpay URL, baseline URL, description) of two empty databases, removed afterwards."""
    if kind == "sqlite":
        description = f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL, one connection)"
        yield f"sqlite:///{workdir / 'bench.sqlite'}", f"sqlite:///{workdir / 'baseline.sqlite'}", description
        return
    import psycopg

    names = [f"musdpay_bench_{uuid.uuid4().hex[:10]}", f"musdpay_bench_base_{uuid.uuid4().hex[:10]}"]
    base = postgres_url.rsplit("/", 1)[0]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{names[0]}",
            f"{base}/{names[1]}",
            f"PostgreSQL {version[0] if version else '?'} (pool of 10 connections)",
        )
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- requests ----------------------------------------------------------------------------------------------


def http_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def wallet_authorization() -> str:
    """`Bearer <access token>` of WALLET, signed with the bench API's JWT key (valid for the token lifetime)."""
    from payment.auth.principal import Role
    from payment.auth.tokens import Keyring
    from payment.core.config import Settings

    token, _ = Keyring.from_settings(Settings(jwt_keys=JWT_KEYS, access_token_ttl_seconds=3600)).issue(
        subject=WALLET, role=Role.wallet
    )
    return f"Bearer {token}"


def create_requests(port: int, path: str, count: int) -> list[bytes]:
    headers = {"Content-Type": "application/json", "Authorization": wallet_authorization()}
    head = http_request("127.0.0.1", port, path, CREATE_BODY, headers)
    split = head.index(b"\r\n\r\n")
    return [head[:split] + f"\r\nIdempotency-Key: {uuid.uuid4()}".encode() + head[split:] for _ in range(count)]


def onramp_object(session: dict[str, Any], status: str) -> dict[str, Any]:
    """A Stripe crypto.onramp_session object for a session the API created (shape of Stripe's fixture)."""
    return {
        "id": session["stripeSessionId"],
        "object": "crypto.onramp_session",
        "client_secret": session["clientSecret"],
        "created": int(time.time()),
        "livemode": False,
        "metadata": {"musdpay_session_id": session["id"]},
        "redirect_url": None,
        "status": status,
        "transaction_details": {
            "destination_amount": None,
            "destination_currencies": ["musd"],
            "destination_currency": "musd",
            "destination_network": "mezo",
            "destination_networks": ["mezo"],
            "fees": {"network_fee_amount": None, "transaction_fee_amount": None},
            "lock_wallet_address": True,
            "source_amount": "100.00",
            "source_currency": "usd",
            "transaction_id": None,
            "wallet_address": WALLET,
        },
    }


def signed_events(count: int, sessions: list[dict[str, Any]]) -> Iterator[tuple[bytes, dict[str, str]]]:
    """Signed `crypto.onramp_session_updated` events (body, headers) with fresh ids, round-robin over `sessions`.

    All say `requires_payment`, and within a run the ids increase (later runs have a later `created`), so each
    event is newer than the last one its session saw and is applied, as Stripe's successive updates are: the
    API reads the session, updates it and records the event (the first event of a session also records a
    status change). Only the few that overtake each other on concurrent connections come out as out of order.
    """
    objects = [onramp_object(session, "requires_payment") for session in sessions]
    now = int(time.time())
    prefix = uuid.uuid4().hex[:12]
    for i in range(count):
        event = {
            "id": f"evt_{prefix}{i:012d}",
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": now,
            "data": {"object": objects[i % len(objects)]},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "crypto.onramp_session_updated",
        }
        payload = json.dumps(event)
        signature = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET, timestamp=now)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": signature,
        }
        yield payload.encode(), headers


def webhook_requests(port: int, path: str, count: int, sessions: list[dict[str, Any]]) -> list[bytes]:
    """signed_events as complete HTTP/1.1 requests to `path`."""
    return [http_request("127.0.0.1", port, path, body, headers) for body, headers in signed_events(count, sessions)]


# --- measurement -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    scenario: str
    app: str
    round: int
    result: LoadResult
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float | None  # the server process's CPU time over every request it served in the run
    concurrency: int

    @classmethod
    def of(
        cls,
        scenario: str,
        app: str,
        round_number: int,
        result: LoadResult,
        cpu_seconds: float | None,
        concurrency: int,
    ) -> Run:
        latencies = sorted(result.latencies)
        served = result.measured + result.warmup_requests
        return cls(
            scenario,
            app,
            round_number,
            result,
            p50_ms=percentile(latencies, 0.50) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
            cpu_ms_per_request=cpu_seconds / served * 1000 if cpu_seconds is not None and served else None,
            concurrency=concurrency,
        )


def load_spec(args: argparse.Namespace, stack: Stack, app: str, scenario: str, concurrency: int) -> LoadSpec:
    """The pre-built requests of one run of `scenario` against `app`."""
    port = stack.ports[app]
    path = path_of(args.against, app, scenario)
    if scenario == "session-create":
        requests = create_requests(port, path, args.max_requests)
    else:
        requests = webhook_requests(port, path, args.max_requests, stack.sessions[app])
    return LoadSpec(
        host="127.0.0.1",
        port=port,
        requests=requests,
        concurrency=concurrency,
        duration=args.duration,
        warmup=args.warmup,
    )


def measure_latency(args: argparse.Namespace, stack: Stack) -> list[Run]:
    """Latency per request, unsaturated: one connection to each app, one request at a time, the apps taking
    turns request by request, so that both see the machine in the same state (bench/loadgen.py)."""
    runs: list[Run] = []
    for round_number in range(1, args.rounds + 1):
        for scenario in args.scenarios:
            specs = [load_spec(args, stack, app, scenario, concurrency=1) for app in APPS]
            before = {app: process_cpu_seconds(stack.servers[app].popen.pid) for app in APPS}
            results = run_alternating_in_process(specs)
            for app, result in zip(APPS, results, strict=True):
                after = process_cpu_seconds(stack.servers[app].popen.pid)
                start = before[app]
                cpu = after - start if after is not None and start is not None else None
                run = Run.of(scenario, app, round_number, result, cpu, 1)
                runs.append(run)
                print(
                    f"  round {round_number} {scenario:<15} {app:<9} alternating, one request at a time: "
                    f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  n={result.measured}",
                    flush=True,
                )
    return runs


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Stack:
    ports: dict[str, int]
    servers: dict[str, Child]  # by app
    sessions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by app: those webhooks name


def seed_sessions(api_url: str, count: int) -> list[dict[str, Any]]:
    sessions = []
    with httpx.Client(base_url=api_url, timeout=30) as client:
        for _ in range(count):
            response = client.post(
                "/api/v1/onramp/sessions",
                content=CREATE_BODY,
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": str(uuid.uuid4()),
                    "Authorization": wallet_authorization(),
                },
            )
            if response.status_code != 201:
                raise RuntimeError(f"seeding a session failed: {response.status_code} {response.text}")
            sessions.append(response.json())
    return sessions


class Profiler:
    """py-spy recording the API process during each of its runs (collapsed stacks, one file per run)."""

    def __init__(self, directory: Path) -> None:
        found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if found is None:
            raise SystemExit("--profile needs py-spy (pip install py-spy)")
        self.executable = found
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def record(self, pid: int, name: str, seconds: float) -> Iterator[None]:
        output = self.directory / f"{name}.txt"
        args = [self.executable, "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
        args += ["--duration", str(max(1, round(seconds))), "--output", str(output), "--nonblocking", "--gil"]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            try:
                process.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def measure(args: argparse.Namespace, stack: Stack, profiler: Profiler | None, concurrency: int) -> list[Run]:
    runs: list[Run] = []
    for round_number in range(1, args.rounds + 1):
        order = APPS[::-1] if round_number % 2 else APPS  # ABBA: baseline first in odd rounds
        for scenario in args.scenarios:
            for app in order:
                spec = load_spec(args, stack, app, scenario, concurrency)
                server = stack.servers[app]
                recording = (
                    profiler.record(server.popen.pid, f"{scenario}-round{round_number}", args.warmup + args.duration)
                    if profiler is not None and app == "musdpay"
                    else contextlib.nullcontext()
                )
                cpu_before = process_cpu_seconds(server.popen.pid)
                with recording:
                    result = run_in_process(spec)
                cpu_after = process_cpu_seconds(server.popen.pid)
                cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
                run = Run.of(scenario, app, round_number, result, cpu, concurrency)
                runs.append(run)
                flag = f"  ERRORS: {result.errors}" if result.errors else ""
                print(
                    f"  round {round_number} {scenario:<15} {app:<9} x{concurrency:<2} {result.throughput:8.1f} req/s"
                    f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  cpu/req {cpu_text(run)} ms"
                    f"  n={result.measured}{flag}",
                    flush=True,
                )
                for sample in result.error_samples[:2]:
                    print(f"    e.g. {sample[:200]}", flush=True)
                if not server.alive():
                    raise RuntimeError(f"{app} died:\n{server.log_tail()}")
    return runs


# --- report ------------------------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpus} CPUs ({model}), Linux {platform.release()}, Python {platform.python_version()}"


def code_version() -> str:
    """The commit measured, and whether the working tree of the service differed from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "payment", "musdpay", "sandbox", "pyproject.toml"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    return f"commit {commit}" + (" with uncommitted changes to the service" if dirty else "")


def best(runs: list[Run], scenario: str, app: str) -> Run | None:
    candidates = [run for run in runs if run.scenario == scenario and run.app == app]
    return max(candidates, key=lambda run: run.result.throughput) if candidates else None


def cpu_text(run: Run) -> str:
    return f"{run.cpu_ms_per_request:.2f}" if run.cpu_ms_per_request is not None else "n/a"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def scenario_section(
    all_runs: list[Run], scenario: str, database_kind: str, comparison: Comparison, concurrency: int
) -> list[str]:
    runs = [run for run in all_runs if run.concurrency == concurrency]
    unsaturated = [run for run in all_runs if run.concurrency == 1 and concurrency != 1]
    ours, base = best(runs, scenario, "musdpay"), best(runs, scenario, "baseline")
    if ours is None or base is None:
        return []
    target = TARGETS[scenario]
    min_ratio = comparison.min_ratio if comparison.min_ratio is not None else target.min_ratio
    label = comparison.labels
    ratio = ours.result.throughput / base.result.throughput if base.result.throughput else 0.0
    lines = [
        f"### {scenario}",
        "",
        "| | throughput (req/s) | p50 (ms) | p99 (ms) | server CPU per request (ms) | errors | measured requests |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in (ours, base):
        flag = " ⚠" if run.result.errors else ""
        lines.append(
            f"| {label[run.app]} `POST {path_of(comparison.name, run.app, scenario)}` | {run.result.throughput:.0f} "
            f"| {run.p50_ms:.2f} "
            f"| {run.p99_ms:.2f} | {cpu_text(run)} | {run.result.errors}{flag} | {run.result.measured} |"
        )
    cpu_ratio = (
        f"{ours.cpu_ms_per_request / base.cpu_ms_per_request:.2f}x"
        if ours.cpu_ms_per_request is not None and base.cpu_ms_per_request
        else ""
    )
    lines.append(
        f"| **{label['musdpay']} / {label['baseline']}** | **{ratio:.2f}** "
        f"| {ours.p50_ms / base.p50_ms if base.p50_ms else 0:.2f}x "
        f"| {ours.p99_ms / base.p99_ms if base.p99_ms else 0:.2f}x | {cpu_ratio} | | |"
    )
    note = "" if database_kind == "sqlite" else " (targets are set for SQLite)"
    errors = ours.result.errors + base.result.errors
    lines += [
        "",
        f"| target{note} | measured | |",
        "|---|---:|---|",
        f"| {label['musdpay']} / {label['baseline']} throughput >= {min_ratio} | {ratio:.2f} "
        f"| {verdict(ratio >= min_ratio)} |",
    ]
    if comparison.name == "baseline":  # the service's own targets; the telemetry comparison has only its ratio
        lines[-1:-1] = [
            f"| musdpay throughput >= {target.min_throughput:.0f} req/s | {ours.result.throughput:.0f} "
            f"| {verdict(ours.result.throughput >= target.min_throughput)} |",
            f"| musdpay p99 < {target.max_p99_ms:.0f} ms | {ours.p99_ms:.2f} "
            f"| {verdict(ours.p99_ms < target.max_p99_ms)} |",
        ]
    latency_lines: list[str] = []
    if comparison.max_added_p99_ms is not None:
        added, latency_lines = added_latency(unsaturated or runs, scenario, label)
        lines.append(
            f"| p99 added < {comparison.max_added_p99_ms:g} ms (median of the rounds, one request at a time) "
            f"| {added:+.2f} | {verdict(added < comparison.max_added_p99_ms)} |"
        )
    lines += [f"| no errors (non-2xx or transport) | {errors} | {verdict(errors == 0)} |", ""]
    rounds = sorted({run.round for run in runs if run.scenario == scenario})
    lines += [
        "Every round (ratio within the round):",
        "",
        f"| round | {label['musdpay']} req/s | {label['baseline']} req/s | ratio |",
    ]
    lines.append("|---:|---:|---:|---:|")
    for number in rounds:
        pair = {run.app: run for run in runs if run.scenario == scenario and run.round == number}
        if set(pair) == set(APPS):
            ours_t, base_t = pair["musdpay"].result.throughput, pair["baseline"].result.throughput
            lines.append(f"| {number} | {ours_t:.0f} | {base_t:.0f} | {ours_t / base_t if base_t else 0:.2f} |")
    lines.append("")
    return lines + latency_lines


def added_latency(runs: list[Run], scenario: str, label: dict[str, str]) -> tuple[float, list[str]]:
    """The p99 latency the first app adds: the median over rounds of the difference within each round (the two
    runs of a round are back to back, so they share the machine's state), and a table of every round."""
    lines = [
        "Latency added per request, unsaturated: one connection to each app, one request at a time, the two apps "
        "taking turns request by request (A B B A ...) so that both see the machine in the same state. (With N "
        "connections in a closed loop at saturation, latency is N / throughput, so p99 there would measure "
        "throughput again.)",
        "",
        f"| round | {label['musdpay']} p50 (ms) | p99 (ms) | {label['baseline']} p50 (ms) | p99 (ms) "
        "| p99 added (ms) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    differences = []
    for number in sorted({run.round for run in runs if run.scenario == scenario}):
        pair = {run.app: run for run in runs if run.scenario == scenario and run.round == number}
        if set(pair) != set(APPS):
            continue
        ours, base = pair["musdpay"], pair["baseline"]
        differences.append(ours.p99_ms - base.p99_ms)
        lines.append(
            f"| {number} | {ours.p50_ms:.2f} | {ours.p99_ms:.2f} | {base.p50_ms:.2f} | {base.p99_ms:.2f} "
            f"| {differences[-1]:+.2f} |"
        )
    return (statistics.median(differences) if differences else 0.0), [*lines, ""]


def report(args: argparse.Namespace, runs: list[Run], command: str, database: str, noise: str, code: str) -> str:
    comparison = COMPARISONS[args.against]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    exhausted = any(run.result.exhausted for run in runs)
    flagged = [run for run in runs if run.result.errors]
    lines = [
        comparison.marks[0],
        f"## {comparison.title}",
        "",
        f"Measured {when} at {code} on {machine()}; database {database}. Other processes used {noise} of the machine's "
        "CPU during the run (a noisy neighbour shows here"
        + ("; so does the PostgreSQL server)." if args.database == "postgresql" else ")."),
        "",
        "```sh",
        command,
        "```",
        "",
        f"Each run: {args.concurrency} keep-alive HTTP/1.1 connections from a separate load-generator process on "
        f"loopback (closed loop: each connection sends its next request when the previous one is answered), "
        f"{args.warmup:g} s warm-up excluded, then {args.duration:g} s measured (or at most {args.max_requests} "
        f"requests). {args.rounds} rounds alternating the two apps (ABBA); each side's best round is shown, "
        "every round is listed below it. The Stripe emulator is shared. "
        + (
            "The other app is musdpay itself with `MUSDPAY_TELEMETRY_ENABLED=false` (no traces, no request "
            "metrics or access log), its own database, same options. "
            if comparison.name == "telemetry-off"
            else "The baseline is bench/baseline_app.py: a bare FastAPI app doing the same database writes (for "
            "webhook-ingest: read the session, update it, record a status change when it moves, insert the event; "
            "for session-create: the same emulator call and insert) with a commit per request, under uvicorn with "
            "the options of `musdpay serve`. "
        )
        + "Server CPU per request is the server "
        "process's user+system time over the run divided by the requests it served: the cost that sets the "
        "ceiling when the load generator, the emulator and the server share two cores.",
        "",
    ]
    if flagged:
        lines += [f"**{len(flagged)} run(s) had errors** (non-2xx or transport); see the errors column.", ""]
    if exhausted:
        lines += ["Some runs sent every pre-built request before the duration was over (raise --max-requests).", ""]
    for scenario in args.scenarios:
        lines += scenario_section(runs, scenario, args.database, comparison, args.concurrency)
    lines.append(comparison.marks[1])
    return "\n".join(lines) + "\n"


def cpu_snapshot() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its waited-for children)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
        times = os.times()
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    busy = (user + nice + system + irq + softirq + steal) / ticks
    return busy, times.user + times.system + times.children_user + times.children_system


def other_load(before: tuple[float, float] | None, after: tuple[float, float] | None, seconds: float) -> str:
    """How much of the machine other processes used while the benchmark ran (its own children excluded)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if before is None or after is None or seconds <= 0:
        return "n/a"
    others = (after[0] - before[0]) - (after[1] - before[1])
    return f"{max(0.0, others) / (seconds * cpus) * 100:.0f}%"


def write_section(path: Path, section: str, mark_start: str = MARK_START, mark_end: str = MARK_END) -> None:
    """Replace the section between the markers in `path` (or append it), leaving the rest as it is."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\nResults of the scripts in bench/, newest run.\n"
    start, end = text.find(mark_start), text.find(mark_end)
    if start != -1 and end > start:
        rest = text[end + len(mark_end) :].lstrip("\n")
        text = text[:start] + section + ("\n" + rest if rest else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def exact_command() -> str:
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(Path.cwd())
    return shlex.join([str(python), *sys.argv])


# --- main --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run (default 2)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections of the load generator (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each app per scenario (default 2)")
    parser.add_argument("--max-requests", type=int, default=50_000, help="count bound per run (default 50000)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MUSDPAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="admin URL where two temporary databases are created (with --database postgresql)",
    )
    parser.add_argument("--scenario", dest="scenarios", action="append", choices=SCENARIOS, help="default: both")
    parser.add_argument(
        "--against",
        choices=tuple(COMPARISONS),
        default="baseline",
        help="the second app: the bare baseline (default), or musdpay with telemetry off (the telemetry's cost)",
    )
    parser.add_argument("--output", default="docs/benchmarks.md", help="markdown file to update; '-' for none")
    parser.add_argument(
        "--api-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the API, e.g. MUSDPAY_TRACE_SAMPLE_RATIO=0 (repeatable)",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="record the API with py-spy (GIL holder only) into this directory"
    )
    args = parser.parse_args(argv)
    args.scenarios = args.scenarios or list(SCENARIOS)
    if any("=" not in item for item in args.api_env):
        parser.error("--api-env takes NAME=VALUE")
    if args.duration <= 0 or args.warmup < 0 or args.concurrency < 1 or args.rounds < 1 or args.max_requests < 1:
        parser.error("--duration, --concurrency, --rounds and --max-requests must be positive")
    return args


def start_stack(args: argparse.Namespace, children: Children, musdpay_db: str, baseline_db: str) -> Stack:
    ports = {name: free_port() for name in ("emulator", *APPS)}
    emulator_url = f"http://127.0.0.1:{ports['emulator']}"
    env = base_env()
    emulator = children.start(
        "emulator",
        [sys.executable, "-m", "musdpay", "sandbox", "stripe", "--port", str(ports["emulator"]), "--api-key", API_KEY],
        env,
    )
    wait_ready(f"{emulator_url}/_sandbox/faults", emulator)
    api_env = (
        env
        | {
            "MUSDPAY_ENVIRONMENT": "test",
            "MUSDPAY_AUTO_MIGRATE": "true",
            "MUSDPAY_DATABASE_URL": musdpay_db,
            "MUSDPAY_STRIPE_API_BASE": emulator_url,
            "MUSDPAY_STRIPE_SECRET_KEY": API_KEY,
            "MUSDPAY_STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
            "MUSDPAY_JWT_KEYS": JWT_KEYS,
            "MUSDPAY_ACCESS_TOKEN_TTL_SECONDS": "3600",
            # The load comes from one IP and one wallet: limits it can never reach, so the limiter's work is
            # measured without it refusing anything.
            "MUSDPAY_RATE_LIMITS": UNREACHABLE_RATE_LIMITS,
        }
        | dict(item.split("=", 1) for item in args.api_env)
    )
    api = children.start(
        "musdpay", [sys.executable, "-m", "musdpay", "serve", "--port", str(ports["musdpay"])], api_env
    )
    if args.against == "telemetry-off":
        off_env = api_env | {"MUSDPAY_DATABASE_URL": baseline_db, "MUSDPAY_TELEMETRY_ENABLED": "false"}
        command = [sys.executable, "-m", "musdpay", "serve", "--port", str(ports["baseline"])]
        baseline, ready = children.start("baseline", command, off_env), "/readyz"
    else:
        baseline_env = env | {
            "BENCH_BASELINE_DATABASE_URL": baseline_db,
            "BENCH_BASELINE_STRIPE_API_BASE": emulator_url,
            "BENCH_BASELINE_STRIPE_SECRET_KEY": API_KEY,
        }
        baseline_args = [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench"), "baseline_app:app"]
        command = [*baseline_args, "--port", str(ports["baseline"]), *UVICORN_OPTIONS]
        baseline, ready = children.start("baseline", command, baseline_env), "/openapi.json"
    wait_ready(f"http://127.0.0.1:{ports['musdpay']}/readyz", api)
    wait_ready(f"http://127.0.0.1:{ports['baseline']}{ready}", baseline)
    stack = Stack(ports=ports, servers={"musdpay": api, "baseline": baseline})
    if "webhook-ingest" in args.scenarios:
        sessions = seed_sessions(f"http://127.0.0.1:{ports['musdpay']}", WEBHOOK_SESSIONS)
        stack.sessions["musdpay"] = sessions
        if args.against == "telemetry-off":
            stack.sessions["baseline"] = seed_sessions(f"http://127.0.0.1:{ports['baseline']}", WEBHOOK_SESSIONS)
        else:  # the same sessions, so the baseline's webhooks find theirs and do the same writes
            seed = [{"id": row["id"], "stripeSessionId": row["stripeSessionId"]} for row in sessions]
            httpx.post(f"http://127.0.0.1:{ports['baseline']}/seed", json=seed, timeout=30).raise_for_status()
            stack.sessions["baseline"] = sessions
    return stack


def _raise_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = exact_command()
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    profiler = Profiler(args.profile) if args.profile is not None else None
    started = time.monotonic()
    cpu_before = cpu_snapshot()
    code = code_version()  # before the servers start: what they load
    workdir = Path(tempfile.mkdtemp(prefix="musdpay-bench-"))
    children = Children(workdir)
    try:
        with databases(args.database, workdir, args.postgres_url) as (musdpay_db, baseline_db, database):
            print(f"bench/api.py: {database}; {machine()}", flush=True)
            try:
                stack = start_stack(args, children, musdpay_db, baseline_db)
                runs = measure(args, stack, profiler, args.concurrency)
                if COMPARISONS[args.against].max_added_p99_ms is not None:
                    runs += measure_latency(args, stack)
            finally:
                children.stop_all()
        noise = other_load(cpu_before, cpu_snapshot(), time.monotonic() - started)
        section = report(args, runs, command, database, noise, code)
        print()
        print(section, end="")
        if args.output != "-":
            output = Path(args.output)
            write_section(output, section, *COMPARISONS[args.against].marks)
            print(f"written to {output}")
        print(f"total {time.monotonic() - started:.0f} s")
        return 0
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
