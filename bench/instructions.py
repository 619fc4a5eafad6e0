"""Instructions per request, counted by callgrind: the payment API against the bare baseline and against itself
with telemetry off, on a measure that does not move with the neighbours.

    .venv/bin/python bench/instructions.py [--webhooks N] [--creates N] [--output docs/benchmarks.md] [--quick]

bench/api.py measures throughput, the targets' unit, but on a shared 2-core machine the same app moves by a third
between rounds. Valgrind's callgrind counts the instructions a process executes in user space: the same for the
same code and inputs, whatever else the machine does. Each app runs in its own process under callgrind, with
counting off during start-up and warm-up and switched on (`callgrind_control`) around the measured requests,
which are driven through the app's ASGI interface in that process. So what is counted is the app's own work for a
request: uvicorn's HTTP parsing, the kernel's socket and file work, and the Stripe emulator (its own process) are
not, and they are the same for every app. A ratio of counts is then what the throughput ratio would be for a
server bound by its own CPU, without the common costs that bring real ratios closer to 1.

Apps, each configured as in bench/api.py: `musdpay` (as `musdpay serve` runs it: JSON logs, telemetry on, no
exporter), `telemetry-off` (`MUSDPAY_TELEMETRY_ENABLED=false`), and `baseline` (bench/baseline_app.py). The
result goes between the `bench:instructions` markers of the output file, with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench import api  # noqa: E402

MARK_START = "<!-- bench:instructions:start -->"
MARK_END = "<!-- bench:instructions:end -->"
APPS = ("musdpay", "telemetry-off", "baseline")
SCENARIOS = ("webhook-ingest", "session-create")
WARMUP = 30  # requests before counting starts: caches filled, statements compiled
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


# --- the measured process (runs under callgrind) -----------------------------------------------------------

ASGIApp = Callable[..., Awaitable[None]]


async def call(app: ASGIApp, path: str, body: bytes, headers: dict[str, str]) -> int:
    """One POST through the app's ASGI interface, as uvicorn would deliver it; the response status."""
    raw_headers = [(b"host", b"127.0.0.1:3001"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 3001),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": raw_headers,
        "state": {},
    }
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects mid-request
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def started(app: ASGIApp) -> Callable[[], Awaitable[None]]:
    """Run the app's lifespan start-up; returns its shut-down."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})

    async def lifespan() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)

    task = asyncio.create_task(lifespan())
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"start-up failed: {message}")

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return stop


def load_app(name: str, emulator_url: str, workdir: Path) -> tuple[ASGIApp, dict[str, str]]:
    """The app as bench/api.py serves it, and its paths by scenario."""
    os.environ.update(api.base_env())
    if name == "baseline":
        os.environ.update(
            BENCH_BASELINE_DATABASE_URL=f"sqlite:///{workdir}/baseline.sqlite",
            BENCH_BASELINE_STRIPE_API_BASE=emulator_url,
            BENCH_BASELINE_STRIPE_SECRET_KEY=api.API_KEY,
        )
        sys.path.insert(0, str(ROOT / "bench"))  # as uvicorn --app-dir bench loads it
        baseline: Any = importlib.import_module("baseline_app")
        return baseline.app, {"webhook-ingest": "/webhook", "session-create": "/sessions", "seed": "/seed"}
    os.environ.update(
        MUSDPAY_ENVIRONMENT="test",
        MUSDPAY_AUTO_MIGRATE="true",
        MUSDPAY_DATABASE_URL=f"sqlite:///{workdir}/musdpay.sqlite",
        MUSDPAY_STRIPE_API_BASE=emulator_url,
        MUSDPAY_STRIPE_SECRET_KEY=api.API_KEY,
        MUSDPAY_STRIPE_WEBHOOK_SECRETS=api.WEBHOOK_SECRET,
        MUSDPAY_JWT_KEYS=api.JWT_KEYS,
        MUSDPAY_ACCESS_TOKEN_TTL_SECONDS="3600",
        MUSDPAY_RATE_LIMITS=api.UNREACHABLE_RATE_LIMITS,
        MUSDPAY_TELEMETRY_ENABLED="false" if name == "telemetry-off" else "true",
        MUSDPAY_DELIVERY_WORKER_ENABLED="false",  # nothing to deliver; its polls would be counted
    )
    from payment.api import create_served_app

    paths = dict(api.PATHS)
    return create_served_app(), {scenario: paths[("musdpay", scenario)] for scenario in SCENARIOS}


def create_headers() -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Authorization": api.wallet_authorization(),
        "Idempotency-Key": str(uuid.uuid4()),
    }


async def measure_child(name: str, scenario: str, count: int, emulator_url: str) -> None:
    """Warm up, then count `count` requests of `scenario` (callgrind's collection switched on around them)."""
    with tempfile.TemporaryDirectory() as workdir:
        app, paths = load_app(name, emulator_url, Path(workdir))
        stop = await started(app) if name != "baseline" else None
        path = paths[scenario]
        if scenario == "webhook-ingest":
            sessions = await seed_sessions(app, name, paths)
            requests = list(api.signed_events(WARMUP + count, sessions))
        else:
            requests = [(api.CREATE_BODY, create_headers()) for _ in range(WARMUP + count)]
        expected = 201 if scenario == "session-create" else 200
        for index, (body, headers) in enumerate(requests):
            if index == WARMUP:
                collect(True)
            status = await call(app, path, body, headers)
            if status != expected:
                raise RuntimeError(f"{name} {scenario} answered {status}")
        collect(False)
        if stop is not None:
            await stop()


async def seed_sessions(app: ASGIApp, name: str, paths: dict[str, str]) -> list[dict[str, Any]]:
    """The sessions the webhook events name, as bench/api.py seeds them: created through musdpay's API (with
    their Stripe ids read back from its database); inserted through the baseline's /seed."""
    if name == "baseline":
        sessions = [
            {"id": str(uuid.uuid4()), "stripeSessionId": f"cos_{uuid.uuid4().hex[:24]}", "clientSecret": "cs"}
            for _ in range(api.WEBHOOK_SESSIONS)
        ]
        seed = [{"id": row["id"], "stripeSessionId": row["stripeSessionId"]} for row in sessions]
        status = await call(app, paths["seed"], json.dumps(seed).encode(), {"Content-Type": "application/json"})
        if status != 204:
            raise RuntimeError(f"seeding the baseline answered {status}")
        return sessions
    for _ in range(api.WEBHOOK_SESSIONS):
        status = await call(app, paths["session-create"], api.CREATE_BODY, create_headers())
        if status != 201:
            raise RuntimeError(f"creating a session answered {status}")
    from sqlalchemy import create_engine, text

    engine = create_engine(os.environ["MUSDPAY_DATABASE_URL"])
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, stripe_session_id, client_secret FROM onramp_sessions")).all()
    engine.dispose()
    return [{"id": row[0], "stripeSessionId": row[1], "clientSecret": row[2]} for row in rows]


def collect(on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "--instr=on" if on else "--instr=off", str(os.getpid())],
        check=True,
        stdout=subprocess.DEVNULL,
    )


# --- the parent --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    scenario: str
    app: str
    requests: int
    instructions: int

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests


def count_one(app: str, scenario: str, requests: int, emulator_url: str, workdir: Path) -> Count:
    output = workdir / f"callgrind.{app}.{scenario}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={output}",
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        app,
        scenario,
        str(requests),
        emulator_url,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    found = _COLLECTED.findall(completed.stderr)
    if completed.returncode != 0 or not found:
        raise RuntimeError(f"{app} {scenario} under callgrind failed:\n{completed.stderr[-3000:]}")
    return Count(scenario, app, requests, int(found[-1]))


def report(counts: list[Count], command: str) -> str:
    by = {(count.scenario, count.app): count for count in counts}
    lines = [
        MARK_START,
        "## Payment API: instructions per request (callgrind)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at {api.code_version()} on {api.machine()}.",
        "",
        "```sh",
        command,
        "```",
        "",
        "User-space instructions executed by the app's process (all its threads) per request, driven through ASGI "
        f"after a warm-up of {WARMUP} requests. Counts repeat run to run, unlike throughput on this machine. Not "
        "counted: uvicorn's HTTP parsing, the kernel's work (sockets, files, waking threads) and the Stripe "
        "emulator. So a ratio here is the throughput ratio of a server bound by its own user-space CPU, and "
        "measured throughput differs from it two ways: the common costs (uvicorn, the kernel) bring ratios closer "
        "to 1; and the baseline hands each request's database work to a worker thread, as FastAPI does with "
        "blocking calls, a hand-off whose cost (thread wake-ups, GIL hand-offs between the event loop and the "
        "worker, growing with concurrent connections) is mostly outside these counts. That is why the baseline "
        "executes fewer instructions per request than musdpay yet serves fewer requests per second at 8 "
        "connections (the throughput section). The telemetry column compares two musdpay processes doing the "
        "same work, so it has no such gap.",
        "",
        "| scenario | app | requests | instructions per request | baseline / app | telemetry off / app |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for scenario in SCENARIOS:
        baseline, off = by.get((scenario, "baseline")), by.get((scenario, "telemetry-off"))
        for app in APPS:
            count = by.get((scenario, app))
            if count is None:
                continue
            versus_baseline = f"{baseline.per_request / count.per_request:.2f}" if baseline else "-"
            versus_off = f"{off.per_request / count.per_request:.2f}" if off else "-"
            lines.append(
                f"| {scenario} | {app} | {count.requests} | {count.per_request:,.0f} | {versus_baseline} "
                f"| {versus_off} |"
            )
    lines += ["", MARK_END, ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--webhooks", type=int, default=300, help="counted webhook events per app (default 300)")
    parser.add_argument("--creates", type=int, default=100, help="counted session creations per app (default 100)")
    parser.add_argument("--quick", action="store_true", help="30 webhooks and 10 creations (a smoke test)")
    parser.add_argument("--output", default="docs/benchmarks.md", help="file to write the section into; - prints")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # app, scenario, requests, emulator URL
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        app, scenario, requests, emulator_url = args.child
        asyncio.run(measure_child(app, scenario, int(requests), emulator_url))
        return 0
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian package valgrind)")
    counts_by_scenario = (
        {"webhook-ingest": 30, "session-create": 10}
        if args.quick
        else {
            "webhook-ingest": args.webhooks,
            "session-create": args.creates,
        }
    )
    command = api.exact_command()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        children = api.Children(workdir)
        try:
            port = api.free_port()
            emulator_url = f"http://127.0.0.1:{port}"
            emulator = children.start(
                "emulator",
                [sys.executable, "-m", "musdpay", "sandbox", "stripe", "--port", str(port), "--api-key", api.API_KEY],
                api.base_env(),
            )
            api.wait_ready(f"{emulator_url}/_sandbox/faults", emulator)
            jobs = [(app, scenario) for scenario in SCENARIOS for app in APPS]
            with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:  # one per core
                futures = [
                    pool.submit(count_one, app, scenario, counts_by_scenario[scenario], emulator_url, workdir)
                    for app, scenario in jobs
                ]
                counts = [future.result() for future in futures]
        finally:
            children.stop_all()
    for count in counts:
        print(f"  {count.scenario:<15} {count.app:<13} {count.per_request:>12,.0f} instructions per request")
    section = report(counts, command)
    if args.output == "-":
        print(section)
    else:
        api.write_section(Path(args.output), section, MARK_START, MARK_END)
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
