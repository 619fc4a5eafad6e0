"""The one error of backups: a message an operator can act on, shown on one line by `musdpay backup`."""

from __future__ import annotations

__all__ = ["BackupError", "WrongKey"]


class BackupError(RuntimeError):
    """A backup that cannot be made, read, verified or restored; the message says why and what to do."""


class WrongKey(BackupError):
    """The backup was made with another key than the configured one."""
