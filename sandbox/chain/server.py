"""`musdpay sandbox chain`: a local chain in the foreground until SIGINT/SIGTERM.

It prints one JSON line on stdout once MUSD is deployed and the treasury funded (`LocalChain.info()`: the
RPC URL, chain id, MUSD address, treasury and deployer with their dev keys), so a script can read the line
and go. On a signal, or if anvil dies, it stops anvil and returns (exit code 0 after a signal, 1 after a
crash).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from types import FrameType

from sandbox.chain.anvil import AnvilError
from sandbox.chain.config import ChainConfig
from sandbox.chain.local import start_chain

__all__ = ["run"]

_WATCH_SECONDS = 0.5  # how soon an anvil crash is noticed


def run(config: ChainConfig) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            chain = start_chain(config)
        except (AnvilError, ValueError) as exc:
            sys.stderr.write(f"cannot start the local chain: {exc}\n")
            return 1
        try:
            sys.stdout.write(json.dumps(chain.info()) + "\n")
            sys.stdout.flush()
            assert chain.anvil is not None
            while not stop.wait(_WATCH_SECONDS):
                if not chain.anvil.alive():
                    sys.stderr.write(f"anvil exited unexpectedly:\n{chain.anvil.output()}")
                    return 1
            return 0
        finally:
            chain.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
