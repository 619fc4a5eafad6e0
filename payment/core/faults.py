"""Crash points: named lines where the process can be made to die, to prove crash safety in tests.

Enabled by listing names in ``MUSDPAY_CRASH_POINTS``; never honoured in production.
"""

from __future__ import annotations

import os
import signal

from payment.core.config import Environment, Settings

__all__ = ["crash_point"]


def crash_point(settings: Settings, name: str) -> None:
    if name in settings.crash_points and settings.environment is not Environment.production:
        # SIGKILL, not an exception: no finally block, no rollback, no flush may run, as in a real crash.
        os.kill(os.getpid(), signal.SIGKILL)
