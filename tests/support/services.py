"""Real services the tests need: PostgreSQL databases, free ports, child processes.

With CI=true a missing service is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.waiting import wait_until

__all__ = [
    "ChildProcess",
    "free_port",
    "postgres_admin_url",
    "require",
    "start_process",
    "temporary_postgres_database",
]

ROOT = Path(__file__).resolve().parents[2]
STRICT = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip locally when a service is missing; fail in CI, where every integration test must run."""
    if condition:
        return
    if STRICT:
        pytest.fail(f"required service missing (CI=true forbids skipping): {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_admin_url() -> str:
    return os.environ.get("MUSDPAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_available() -> tuple[bool, str]:
    try:
        with psycopg.connect(postgres_admin_url(), connect_timeout=3):
            return True, ""
    except psycopg.Error as exc:
        return False, f"PostgreSQL at {postgres_admin_url()} unreachable: {exc}"


@contextmanager
def temporary_postgres_database() -> Iterator[str]:
    """A new empty database for this test run; dropped afterwards. Yields a SQLAlchemy URL."""
    ok, reason = _postgres_available()
    require(ok, reason)
    name = f"musdpay_test_{uuid.uuid4().hex[:12]}"
    admin = postgres_admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class ChildProcess:
    """A child process whose output goes to a log file, killed with its whole process group at the end."""

    args: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 15.0) -> int:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        return self.popen.returncode

    def kill(self) -> None:
        if self.alive():
            self.signal(signal.SIGKILL)
        self.popen.wait(timeout=15)


def start_process(args: list[str], *, env: Mapping[str, str], log_path: Path) -> ChildProcess:
    full_env = {**os.environ, **env}
    with log_path.open("wb") as log:
        popen = subprocess.Popen(  # a new session so the whole group can be signalled
            args, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    return ChildProcess(args=args, popen=popen, log_path=log_path, env=dict(env))


def musdpay_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "musdpay", *args]


def wait_http_ok(url: str, process: ChildProcess, timeout: float = 30.0) -> None:
    def ready() -> bool:
        if not process.alive():
            raise AssertionError(f"process exited early:\n{process.log()}")
        try:
            return httpx.get(url, timeout=1.0).status_code < 500
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=timeout, what=url)


def binary(name: str) -> str | None:
    return shutil.which(name)
