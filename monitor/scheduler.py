"""Running probes on a schedule: one APScheduler job per (probe, target), on the monitor's event loop.

Each job fires every `interval_seconds` plus a random jitter, with `max_instances=1` (a run still going when
the next is due makes that one skip, counted as `overlap`), `coalesce` (runs missed while the loop was busy
collapse into one) and a misfire grace (a run that cannot start within it is skipped, counted as `missed`).
Each run has its own timeout, so a hung probe fails alone: it never holds another job, since every probe's
blocking work (database drivers) runs in threads and the loop stays free.

Scheduling lag, the delay between the time a run was due (jitter included) and its start, is read from
APScheduler's submission event: the listener runs on the loop right before the run's task starts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import JobConfig
from monitor.metrics import MonitorMetrics
from payment.core.metrics import LabelSets

__all__ = ["OUTCOMES", "SKIP_REASONS", "ProbeFailed", "ProbeJob", "ProbeScheduler", "metric_labels"]

log = logging.getLogger(__name__)

OUTCOMES = ("success", "failure", "timeout")  # of a run (`musdpay_monitor_probe_runs_total`)
MISSED, OVERLAP = "missed", "overlap"  # why a run did not start (`musdpay_monitor_probe_skipped_total`)
SKIP_REASONS = (MISSED, OVERLAP)


class ProbeFailed(Exception):
    """A probe saw its target fail; `reason` is a short, low-cardinality description (e.g. an error kind)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ProbeJob:
    probe: str  # the kind of probe: rpc, stripe, payments, database, pipeline, treasury, reverify
    target: str  # what it probes: a provider name, primary/replica, stripe, ...
    timing: JobConfig
    run: Callable[[], Awaitable[None]]

    @property
    def id(self) -> str:
        return f"{self.probe}:{self.target}"


def metric_labels(jobs: Iterable[ProbeJob]) -> LabelSets:
    """The scheduler's series of these jobs, for `MonitorMetrics.initialise`."""
    pairs = [(job.probe, job.target) for job in jobs]
    return {
        "probe_runs": [(*pair, outcome) for pair in pairs for outcome in OUTCOMES],
        "probe_skipped": [(*pair, reason) for pair in pairs for reason in SKIP_REASONS],
        "probe_duration": pairs,
        "probe_lag": pairs,
    }


@dataclass
class _JobState:
    job: ProbeJob
    scheduled_at: float | None = None  # the due time of the run about to start
    failing: bool = False


@dataclass
class ProbeScheduler:
    metrics: MonitorMetrics
    jobs: list[ProbeJob]
    _states: dict[str, _JobState] = field(default_factory=dict)
    _scheduler: AsyncIOScheduler | None = None
    _running: set[asyncio.Task[object]] = field(default_factory=set)
    _closing: bool = False

    async def start(self) -> None:
        """Schedule every job; each first runs within its jitter (at most a second) of now."""
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
        scheduler.add_listener(self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        now = datetime.now(UTC)
        for job in self.jobs:
            if job.id in self._states:
                raise ValueError(f"two probes with the id {job.id}")
            self._states[job.id] = _JobState(job)
            timing = job.timing
            labels = (job.probe, job.target)
            self.metrics.probe_interval.labels(*labels).set(timing.interval_seconds)
            self.metrics.probe_success.labels(*labels)  # the series exist from the start
            for outcome in OUTCOMES:
                self.metrics.probe_runs.labels(*labels, outcome)
            first = now + timedelta(seconds=random.uniform(0, min(timing.jitter, 1.0)))
            scheduler.add_job(
                self._runner(job),
                IntervalTrigger(seconds=timing.interval_seconds, jitter=timing.jitter or None, timezone=UTC),
                id=job.id,
                name=job.id,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, round(timing.misfire_grace)),
                next_run_time=first,
            )
        scheduler.start()
        self._scheduler = scheduler

    async def aclose(self) -> None:
        """Stop scheduling, cancel the runs in progress and wait for them to unwind."""
        self._closing = True
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def _on_event(self, event: JobEvent) -> None:
        state = self._states.get(event.job_id)
        if state is None:
            return
        job = state.job
        if event.code == EVENT_JOB_SUBMITTED:
            times: list[datetime] = getattr(event, "scheduled_run_times", [])
            state.scheduled_at = times[-1].timestamp() if times else None
        elif event.code == EVENT_JOB_MISSED:
            self.metrics.probe_skipped.labels(job.probe, job.target, MISSED).inc()
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self.metrics.probe_skipped.labels(job.probe, job.target, OVERLAP).inc()

    def _runner(self, job: ProbeJob) -> Callable[[], Awaitable[None]]:
        state = self._states[job.id]
        m = self.metrics
        labels = (job.probe, job.target)
        duration = m.probe_duration.labels(*labels)
        lag = m.probe_lag.labels(*labels)
        success = m.probe_success.labels(*labels)
        last_success = m.probe_last_success.labels(*labels)
        runs = {outcome: m.probe_runs.labels(*labels, outcome) for outcome in OUTCOMES}
        timeout = job.timing.timeout

        async def run() -> None:
            task = asyncio.current_task()
            if task is None or self._closing:
                return
            self._running.add(task)
            try:
                await measured()
            except asyncio.CancelledError:
                if not self._closing:
                    raise
            finally:
                self._running.discard(task)

        async def measured() -> None:
            if state.scheduled_at is not None:
                lag.observe(max(time.time() - state.scheduled_at, 0.0))
                state.scheduled_at = None
            started = time.perf_counter()
            outcome, reason = "success", ""
            try:
                async with asyncio.timeout(timeout):
                    await job.run()
            except TimeoutError:
                outcome, reason = "timeout", f"no result within {timeout:g} s"
            except ProbeFailed as exc:
                outcome, reason = "failure", exc.reason
            except Exception as exc:  # a probe's surprise must not stop its schedule
                outcome, reason = "failure", type(exc).__name__
                log.exception("probe %s raised", job.id, extra={"probe": job.probe, "target": job.target})
            duration.observe(time.perf_counter() - started)
            runs[outcome].inc()
            if outcome == "success":
                success.set(1)
                last_success.set(time.time())
                if state.failing:
                    log.info("probe %s recovered", job.id, extra={"probe": job.probe, "target": job.target})
                state.failing = False
                return
            success.set(0)
            if not state.failing:  # logged when it starts failing, not at every run
                log.warning(
                    "probe %s failed: %s (%s)",
                    job.id,
                    outcome,
                    reason,
                    extra={"probe": job.probe, "target": job.target, "outcome": outcome},
                )
            state.failing = True

        run.__name__ = f"probe_{job.probe}_{job.target}"
        return run
