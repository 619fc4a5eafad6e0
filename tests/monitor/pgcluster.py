"""A PostgreSQL server the test starts itself (initdb and pg_ctl in a temporary directory), to stop and restart.

As root (CI containers) the server runs as the `postgres` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.services import free_port, require

__all__ = ["PgCluster", "own_postgres"]


def _bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


@dataclass
class PgCluster:
    bindir: Path
    data: Path
    log: Path
    port: int
    user: str | None  # run the server binaries as this user (when we are root)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if completed.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise AssertionError(f"{' '.join(args)} failed:\n{completed.stdout}{completed.stderr}\n{log}")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "30", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")


@contextmanager
def own_postgres() -> Iterator[PgCluster]:
    bindir = _bindir()
    require(bindir is not None, "PostgreSQL server binaries (initdb, pg_ctl) not installed")
    assert bindir is not None
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            require(False, "running as root and no postgres user to run the server as")
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="musdpay-pg-"))
    data = root / "data"
    data.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (root, data):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    cluster = PgCluster(bindir, data, root / "server.log", free_port(), user)
    if user is not None:
        cluster.log.touch()
        os.chown(cluster.log, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    try:
        cluster._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        cluster.start()
        try:
            yield cluster
        finally:
            subprocess.run(
                [*(["runuser", "-u", user, "--"] if user else []), str(bindir / "pg_ctl"), "-D", str(data),
                 "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
