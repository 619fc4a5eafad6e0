"""A process's descendants, read from /proc: to check that stopping a process tree leaves nothing behind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessId", "alive", "descendants"]


@dataclass(frozen=True)
class ProcessId:
    """A pid with its start time (clock ticks since boot), so a reused pid is not mistaken for the process."""

    pid: int
    started: int
    command: str


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its closing one.
    fields = text[text.rindex(")") + 2 :].split()
    state, parent, started = fields[0], int(fields[1]), int(fields[19])
    return None if state == "Z" else (parent, started)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(root: int) -> list[ProcessId]:
    """Every live process below `root` (children, their children, ...)."""
    parents: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            parents.setdefault(stat[0], []).append((int(entry.name), stat[1]))
    found: list[ProcessId] = []
    queue = [root]
    while queue:
        for pid, started in parents.get(queue.pop(), []):
            found.append(ProcessId(pid, started, _command(pid)))
            queue.append(pid)
    return found


def alive(process: ProcessId) -> bool:
    stat = _stat(process.pid)
    return stat is not None and stat[1] == process.started
