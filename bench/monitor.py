"""Cost of `musdpay monitor` probing many RPC targets, against prometheus-blackbox-exporter, in the same run.

    .venv/bin/python bench/monitor.py [--targets 100] [--interval 5] [--duration 60] [--output docs/benchmarks.md]

Starts a local chain (anvil) and points `--targets` RPC targets at it (the same node under distinct URLs,
`/?target=NNN`). Then, one after the other, each for `--duration` seconds after a warm-up of one interval:

- `blackbox`: `prometheus-blackbox-exporter` (Debian) with an http module POSTing `eth_blockNumber` and
  requiring a `"result"` in the answer; this script plays Prometheus, asking `/probe` for every target once
  per interval (spread evenly). Only the exporter's CPU is counted: the scraper is Prometheus' cost in
  production, and the monitor needs none.
- `monitor (same POST)`: `musdpay monitor` with one RPC job per target every `--interval` (jitter 10%),
  asking only `eth_blockNumber` (`chain_id_every` beyond the run): the same work per probe as the exporter.
- `monitor (default)`: the same with its default probe, `eth_chainId` then `eth_blockNumber`.

Per variant: probes completed per second, the process's CPU (user+system, from /proc) as a share of one core and
per probe, its largest resident memory, failed probes, and for the monitor the scheduling lag of its jobs (from
its own `musdpay_monitor_probe_scheduling_lag_seconds` histogram, the difference over the measured window).
Writes its section between the `bench:monitor` markers of the output file, other sections untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench`, `payment` and `sandbox` importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.api import code_version, exact_command, machine, write_section  # noqa: E402
from sandbox.chain.local import running_chain  # noqa: E402

MARK_START = "<!-- bench:monitor:start -->"
MARK_END = "<!-- bench:monitor:end -->"
BLACKBOX = "prometheus-blackbox-exporter"
BODY = '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Result:
    label: str
    seconds: float
    probes: int
    failures: int
    cpu: float  # seconds
    rss_max: int
    lag: dict[str, float] = field(default_factory=dict)  # mean, p50, p99 in seconds (monitor only)

    @property
    def probes_per_second(self) -> float:
        return self.probes / self.seconds if self.seconds else 0.0

    @property
    def cpu_share(self) -> float:
        return self.cpu / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_probe_ms(self) -> float:
        return self.cpu / self.probes * 1000 if self.probes else float("nan")


def _sample_rss(pid: int, until: float, peak: int) -> int:
    while time.monotonic() < until:
        peak = max(peak, rss_bytes(pid))
        time.sleep(min(0.5, max(until - time.monotonic(), 0)))
    return max(peak, rss_bytes(pid))


# --- the monitor ---------------------------------------------------------------------------------------


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **want: str) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and want.items() <= dict(labels).items())


def _lag(before: dict[Any, float], after: dict[Any, float]) -> dict[str, float]:
    name = "musdpay_monitor_probe_scheduling_lag_seconds"
    buckets: dict[float, float] = {}
    for (n, labels), value in after.items():
        if n == f"{name}_bucket":
            le = float(dict(labels)["le"])
            buckets[le] = buckets.get(le, 0.0) + value - before.get((n, labels), 0.0)
    count = _sum(after, f"{name}_count") - _sum(before, f"{name}_count")
    total = _sum(after, f"{name}_sum") - _sum(before, f"{name}_sum")

    def quantile(q: float) -> float:
        ordered = sorted(buckets.items())
        rank, previous_le, previous_count = q * count, 0.0, 0.0
        for le, cumulative in ordered:
            if cumulative >= rank:
                if le == float("inf"):
                    return previous_le
                inside = cumulative - previous_count
                return previous_le + (le - previous_le) * ((rank - previous_count) / inside if inside else 0)
            previous_le, previous_count = le, cumulative
        return previous_le

    return {"mean": total / count if count else 0.0, "p50": quantile(0.5), "p99": quantile(0.99)}


def run_monitor(label: str, targets: list[str], chain_id: int, args: argparse.Namespace, scratch: Path) -> Result:
    providers = ",".join(f"t{i:03d}={url}" for i, url in enumerate(targets))
    config = {
        "settings": {"environment": "test", "chain_id": chain_id, "rpc_providers": providers, "log_level": "WARNING"},
        "server": {"port": 0},
        "rpc": {"interval_seconds": args.interval, "chain_id_every": 1 if label.endswith("(default)") else 10**9},
        **{name: {"enabled": False} for name in ("stripe", "payments", "database", "pipeline", "treasury")},
    }
    path = scratch / "monitor.yml"
    path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "musdpay", "monitor", "--config", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        if not ready:
            raise RuntimeError("musdpay monitor did not start")
        url = json.loads(process.stdout.readline())["metricsUrl"]
        time.sleep(args.interval + 1)  # warm-up: every job has run once
        before, cpu0, t0 = _scrape(url), cpu_seconds(process.pid), time.monotonic()
        peak = _sample_rss(process.pid, t0 + args.duration, 0)
        after, cpu1, t1 = _scrape(url), cpu_seconds(process.pid), time.monotonic()
    finally:
        process.terminate()
        process.wait(30)
    runs = "musdpay_monitor_probe_runs_total"
    probes = _sum(after, runs, probe="rpc") - _sum(before, runs, probe="rpc")
    ok = _sum(after, runs, probe="rpc", outcome="success") - _sum(before, runs, probe="rpc", outcome="success")
    return Result(label, t1 - t0, int(probes), int(probes - ok), cpu1 - cpu0, peak, _lag(before, after))


# --- the blackbox exporter ------------------------------------------------------------------------------


BLACKBOX_CONFIG = f"""modules:
  jsonrpc:
    prober: http
    timeout: 4s
    http:
      method: POST
      headers:
        Content-Type: application/json
      body: '{BODY}'
      valid_status_codes: [200]
      fail_if_body_not_matches_regexp: ['"result"']
"""


async def _scrape_blackbox(base: str, targets: list[str], interval: float, until: float) -> tuple[int, int]:
    """Play Prometheus: /probe for every target once per interval, spread evenly; (probes, failures)."""
    import aiohttp

    done = failed = 0
    async with aiohttp.ClientSession() as session:

        async def one(index: int) -> None:
            nonlocal done, failed
            await asyncio.sleep(interval * index / len(targets))
            while time.monotonic() < until:
                started = time.monotonic()
                params = {"module": "jsonrpc", "target": targets[index]}
                async with session.get(f"{base}/probe", params=params) as response:
                    text = await response.text()
                done += 1
                failed += "probe_success 1" not in text
                await asyncio.sleep(max(interval - (time.monotonic() - started), 0))

        await asyncio.gather(*(one(i) for i in range(len(targets))))
    return done, failed


def run_blackbox(targets: list[str], args: argparse.Namespace, scratch: Path) -> Result | None:
    binary = shutil.which(BLACKBOX)
    if binary is None:
        return None
    path = scratch / "blackbox.yml"
    path.write_text(BLACKBOX_CONFIG)
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/-/healthy", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{BLACKBOX} did not start")
            time.sleep(0.1)
        # Warm-up: one interval of probing, then the measured window.
        asyncio.run(_scrape_blackbox(base, targets, args.interval, time.monotonic() + args.interval))
        cpu0, t0 = cpu_seconds(process.pid), time.monotonic()
        probes, failures = asyncio.run(_scrape_blackbox(base, targets, args.interval, t0 + args.duration))
        cpu1, t1 = cpu_seconds(process.pid), time.monotonic()
        peak = rss_bytes(process.pid)
    finally:
        process.terminate()
        process.wait(30)
    return Result("prometheus-blackbox-exporter", t1 - t0, probes, failures, cpu1 - cpu0, peak)


def version_of_blackbox() -> str:
    binary = shutil.which(BLACKBOX)
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False, timeout=10)
    first = (out.stdout or out.stderr).splitlines()
    return first[0] if first else "unknown"


# --- report --------------------------------------------------------------------------------------------


def render(results: list[Result], args: argparse.Namespace) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        MARK_START,
        "## Monitor: probing RPC targets, against prometheus-blackbox-exporter",
        "",
        f"Measured {when} at {code_version()} on {machine()}; {version_of_blackbox()}.",
        "",
        "```sh",
        exact_command(),
        "```",
        "",
        f"{args.targets} RPC targets (one local anvil under {args.targets} URLs), one probe of each every "
        f"{args.interval:g} s, measured for {args.duration:g} s per variant after one interval of warm-up, variants "
        "one after the other. CPU is the prober process's user+system time over the window (the blackbox "
        "exporter's scraper, played by this script as Prometheus would, is not counted); memory is its largest "
        "resident set; lag is the delay from a monitor job's due time to its start.",
        "",
        "| prober | probes/s | CPU (% of one core) | CPU per probe (ms) | max RSS (MiB) | failed probes "
        "| lag mean / p50 / p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lag = f"{r.lag['mean'] * 1000:.2f} / {r.lag['p50'] * 1000:.2f} / {r.lag['p99'] * 1000:.2f}" if r.lag else "n/a"
        lines.append(
            f"| {r.label} | {r.probes_per_second:.1f} | {r.cpu_share * 100:.2f} | {r.cpu_per_probe_ms:.3f} "
            f"| {r.rss_max / 2**20:.1f} | {r.failures} | {lag} |"
        )
    by_label = {r.label: r for r in results}
    same = by_label.get("musdpay monitor (same POST)")
    blackbox = by_label.get("prometheus-blackbox-exporter")
    lines.append("")
    if same and blackbox and blackbox.probes and same.probes:
        ratio = same.cpu_per_probe_ms / blackbox.cpu_per_probe_ms
        lines.append(
            f"**CPU per probe, monitor (same POST) / blackbox exporter: {ratio:.2f}x.** Per probe the monitor also "
            "tracks heads across providers (lag in blocks and seconds, stalls), credits and its own scheduling "
            "metrics, in Python on one event loop; the exporter is a Go HTTP prober that keeps nothing between "
            "probes, and needs a Prometheus scrape per probe to run at all."
        )
    elif blackbox is None:
        lines.append(f"`{BLACKBOX}` is not installed (`bash scripts/ensure-tools.sh`): no comparison in this run.")
    lines += ["", MARK_END]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--targets", type=int, default=100, help="RPC targets (default 100)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between probes of a target (default 5)")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds per variant (default 60)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[Result] = []
    with running_chain() as chain, tempfile.TemporaryDirectory(prefix="musdpay-bench-monitor-") as folder:
        scratch = Path(folder)
        targets = [f"{chain.rpc_url}/?target={i:03d}" for i in range(args.targets)]
        blackbox = run_blackbox(targets, args, scratch)
        if blackbox is not None:
            results.append(blackbox)
        for label in ("musdpay monitor (same POST)", "musdpay monitor (default)"):
            results.append(run_monitor(label, targets, chain.chain_id, args, scratch))
    section = render(results, args)
    write_section(args.output, section, MARK_START, MARK_END)
    sys.stdout.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
