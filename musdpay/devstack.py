"""`musdpay dev`: the whole local stack as child processes, wired together.

    local chain (anvil, :8545) <- RPC proxies "spectrum" (:8546, primary) and "public" (:8547) <- the API (:3001)
    Stripe emulator (:12111) -> signed webhooks -> the API; in onramp mode it pays buyers on the local chain
    the monitor (:9101/metrics) probes the proxies, the emulator and the database

The chain and the proxies print one JSON line when ready (addresses, URLs); the next process is configured from
it. Explicit `MUSDPAY_*` variables in the environment win over what is wired here.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any

__all__ = ["DevStack"]

_START_TIMEOUT = 60.0


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "musdpay", *args]


def _pump(stream: IO[bytes]) -> None:
    """Copy a child's remaining output to ours (after its JSON line), so its logs stay visible."""
    for line in iter(stream.readline, b""):
        sys.stdout.buffer.write(line)
        sys.stdout.flush()


@dataclass
class DevStack:
    env: dict[str, str]
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(_command(*args), env=self.env)
        self.children.append(child)
        return child

    def start_announced(self, *args: str) -> dict[str, Any]:
        """Start a child that prints a JSON line once ready; return that line."""
        child = subprocess.Popen(_command(*args), env=self.env, stdout=subprocess.PIPE)
        self.children.append(child)
        assert child.stdout is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            ready, _, _ = select.select([child.stdout], [], [], 0.5)
            if ready:
                line = child.stdout.readline()
                if not line:
                    raise RuntimeError(f"`musdpay {' '.join(args)}` exited before it was ready")
                info: dict[str, Any] = json.loads(line)
                threading.Thread(target=_pump, args=(child.stdout,), daemon=True).start()
                return info
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`musdpay {' '.join(args)}` did not start")

    def stop(self) -> None:
        for child in reversed(self.children):  # the API first, the chain last
            if child.poll() is None:
                child.terminate()
        for child in reversed(self.children):
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()

    def wait(self) -> int:
        def stop(_signum: int, _frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while all(child.poll() is None for child in self.children):
                time.sleep(0.2)
        finally:
            self.stop()
        codes = {child.returncode for child in self.children}
        return 0 if codes <= {0, -signal.SIGTERM} else 1


def wire_chain(stack: DevStack, chain_port: int) -> dict[str, Any]:
    """Start the chain and its two proxies; put the chain settings in the stack's environment."""
    chain = stack.start_announced("sandbox", "chain", "--port", str(chain_port))
    # Next to the chain (8546, 8547 by default), so monitor.yml and a Prometheus config can name them.
    proxies = {}
    for offset, name in enumerate(("spectrum", "public"), start=1):
        port = str(chain_port + offset if chain_port else 0)
        proxies[name] = stack.start_announced(
            "sandbox", "rpc-proxy", "--upstream", chain["rpcUrl"], "--name", name, "--port", port
        )
    spectrum, public = proxies["spectrum"], proxies["public"]
    env = stack.env
    env.setdefault("MUSDPAY_CHAIN_ID", str(chain["chainId"]))
    env.setdefault("MUSDPAY_RPC_PROVIDERS", f"spectrum={spectrum['url']},public={public['url']}")
    env.setdefault("MUSDPAY_MUSD_ADDRESS", chain["musdAddress"])
    # The local treasury's published anvil key: worthless anywhere but on this chain.
    env.setdefault("MUSDPAY_TREASURY_KEY", chain["treasuryPrivateKey"])
    return {"chain": chain, "spectrum": spectrum, "public": public}
