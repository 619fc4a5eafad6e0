"""A private PostgreSQL cluster with WAL archiving, to destroy and restore (tests/payment/backup/test_pitr.py and
the drill, bench/pitr.py).

    with pitr_cluster(tmp_path, archive_command=..., archive_timeout_seconds=1) as cluster:
        ...                      # cluster.url (SQLAlchemy), cluster.conninfo (libpq)
        cluster.destroy()        # SIGKILL-like stop (immediate) and its data directory removed
        restored = cluster.sibling("restored")   # a new, empty data directory on a new port
        ... musdpay pitr restore --pgdata restored.data ...; restored.start(); restored.wait_promoted()

As root (CI containers) the server runs as the `postgres` user, which can neither enter /root nor so run the venv's
interpreter: `server_musdpay_command()` gives archive_command and restore_command a way to run this checkout's
musdpay as that user (the system Python of the same minor version, with the venv's packages on PYTHONPATH).
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

__all__ = [
    "PitrCluster",
    "pg_bindir",
    "pitr_cluster",
    "server_directory",
    "server_musdpay_command",
    "server_user",
    "switch_wal_and_wait_archived",
]

ROOT = Path(__file__).resolve().parents[2]


def pg_bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def server_user() -> str | None:
    """The user the server runs as: ourselves, or `postgres` when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    pwd.getpwnam("postgres")  # KeyError: no user to run the server as
    return "postgres"


def server_musdpay_command() -> str:
    """A shell command prefix that runs this checkout's `musdpay` as the server's user."""
    if server_user() is None:
        return f"{shlex.quote(sys.executable)} -m musdpay"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    python = f"/usr/bin/python{version}"
    site = sysconfig.get_paths()["purelib"]
    command = f"env PYTHONPATH={shlex.quote(f'{site}:{ROOT}')} {python} -m musdpay"
    # A checkout made by `mktemp -d` (CI's fresh clone) is mode 0700: let the server's user read it (o+rx: Python's
    # importer lists a path entry's directory) to reach the code and the venv inside, whose files are world-readable.
    mode = ROOT.stat().st_mode
    if mode & (stat.S_IROTH | stat.S_IXOTH) != stat.S_IROTH | stat.S_IXOTH:
        ROOT.chmod(mode | stat.S_IROTH | stat.S_IXOTH)
    probe = subprocess.run(
        ["runuser", "-u", "postgres", "--", "sh", "-c", f"{command} pitr --help"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        raise RuntimeError(
            f"the postgres user cannot run musdpay ({command}): {probe.stderr.decode(errors='replace')[-500:]}"
        )
    return command


@dataclass
class PitrCluster:
    bindir: Path
    root: Path
    data: Path
    port: int
    user: str | None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / f"{self.data.name}.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def conninfo(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def chown(self, path: Path) -> None:
        """Give `path` (recursively) to the server's user: files laid out by a root process."""
        if self.user is None:
            return
        entry = pwd.getpwnam(self.user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        for parent, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                os.chown(os.path.join(parent, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    def run(self, *args: str, timeout: float = 120) -> str:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if completed.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise AssertionError(f"{' '.join(args)} failed:\n{completed.stdout}{completed.stderr}\n{log}")
        return completed.stdout

    def initdb(self, *, wal_segsize_mb: int = 16) -> None:
        self.data.mkdir(mode=0o700)
        self.chown(self.data)
        self.run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8",
            f"--wal-segsize={wal_segsize_mb}",
        )  # fmt: skip

    def configure(self, settings: dict[str, str]) -> None:
        """Append `name = value` lines (values already quoted for postgresql.conf) to postgresql.auto.conf."""
        with (self.data / "postgresql.auto.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self.chown(self.data / "postgresql.auto.conf")

    def start(self, *, wait_seconds: int = 120) -> None:
        if not self.log.exists():
            self.log.touch()
            self.chown(self.log)
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        self.run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", str(wait_seconds), "start",
            timeout=wait_seconds + 10,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        """The crash: an immediate stop (no checkpoint, no last archive), then the data directory is gone."""
        self.stop("immediate")
        shutil.rmtree(self.data)

    def sibling(self, name: str) -> PitrCluster:
        """Another cluster (not initialised: for a restore) in the same root, on its own port."""
        from tests.support.services import free_port

        return PitrCluster(self.bindir, self.root, self.root / name, free_port(), self.user)

    def wait_promoted(self, timeout: float = 120.0) -> None:
        """Recovery replayed to its target and the server promoted itself (read-write)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.conninfo, connect_timeout=3) as connection:
                    row = connection.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row is not None and row[0] is False:
                        return
                    last = "still in recovery"
            except psycopg.Error as exc:
                last = exc
            time.sleep(0.1)
        log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
        raise AssertionError(f"not promoted within {timeout}s ({last}):\n{log}")

    def cleanup(self) -> None:
        if (self.data / "postmaster.pid").exists():
            command = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
            if self.user is not None:
                command = ["runuser", "-u", self.user, "--", *command]
            subprocess.run(command, capture_output=True, timeout=60, check=False)


def server_directory() -> Path:
    """A new temporary directory the server's user owns (for a cluster, its archive and restored siblings)."""
    root = Path(tempfile.mkdtemp(prefix="musdpay-pitr-"))
    user = server_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    return root


@contextmanager
def pitr_cluster(
    root: Path | None = None,
    *,
    archive_command: str | None = None,
    archive_timeout_seconds: int = 30,
    wal_segsize_mb: int = 16,
    extra: dict[str, str] | None = None,
) -> Iterator[PitrCluster]:
    """An initialised, started cluster archiving through `archive_command` (None: archiving off; or pass the
    settings in `extra`), in `root` (default: a new server_directory(), also the place for its archive directory
    and restored siblings); every server started in it is stopped and the root removed afterwards. Callers
    check `pg_bindir()` first (tests: `require`)."""
    from tests.support.services import free_port

    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    user = server_user()
    root = root if root is not None else server_directory()
    cluster = PitrCluster(bindir, root, root / "data", free_port(), user)
    try:
        cluster.initdb(wal_segsize_mb=wal_segsize_mb)
        settings = {"fsync": "off", "max_wal_senders": "4", **(extra or {})}
        if archive_command is not None:
            from payment.backup.pitr import archive_settings

            settings |= archive_settings(archive_command, archive_timeout_seconds=archive_timeout_seconds)
        cluster.configure(settings)
        cluster.start()
        yield cluster
    finally:
        for path in root.iterdir():
            if path.is_dir() and (path / "PG_VERSION").exists():
                PitrCluster(bindir, root, path, 0, user).cleanup()
        shutil.rmtree(root, ignore_errors=True)


def switch_wal_and_wait_archived(conninfo: str, *, timeout: float = 30.0) -> str:
    """Close the current WAL segment and wait until the archiver stored it; its name. A restore to a target needs
    the archive to hold WAL past the target (the first commit after it), or recovery ends before the target."""
    from tests.support.waiting import wait_until

    with psycopg.connect(conninfo, autocommit=True) as connection:
        row = connection.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        segment = str(row[0])

        def archived() -> bool:
            done = connection.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            return done is not None and done[0] is not None and str(done[0])[:24] >= segment

        wait_until(archived, timeout=timeout, interval=0.1, what=f"WAL segment {segment} archived")
    return segment
