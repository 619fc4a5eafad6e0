"""A small client of Prometheus's HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/).

    client = PrometheusClient("http://127.0.0.1:9090")
    client.query('up{job="musdpay-api"}')                 # instant vector / scalar results, as Prometheus sends them
    client.query_range("rate(x[5m])", start, end, step)  # matrix results
    client.alerts()                                      # firing and pending alerts (GET /api/v1/alerts)
    client.rules()                                       # rule groups (GET /api/v1/rules)
    client.status_config()                               # its configuration, as YAML (scrape interval, ...)

Errors: `PrometheusUnavailable` when Prometheus cannot be reached or answers other than 2xx/4xx JSON (the caller
cannot do anything but say so); `PrometheusQueryError` when it answers `status: error` (a bad expression is a
bug on our side, named with the expression).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

__all__ = ["PrometheusClient", "PrometheusError", "PrometheusQueryError", "PrometheusUnavailable", "Sample"]


class PrometheusError(Exception):
    """Base of the client's errors."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not be reached, timed out, or did not answer with its API's JSON."""


class PrometheusQueryError(PrometheusError):
    """Prometheus refused a query (`status: error`): a bad expression or parameter."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of an instant query: its labels and value (NaN and Inf are kept as floats)."""

    labels: dict[str, str]
    value: float


def _timestamp(value: datetime | float) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


class PrometheusClient:
    def __init__(self, url: str, *, timeout: float = 10.0, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = client if client is not None else httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.get(f"{self.url}{path}", params=params)
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.url} cannot be reached: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} answered {response.status_code} without its API's JSON"
            ) from exc
        if not isinstance(body, dict) or "status" not in body:
            raise PrometheusUnavailable(f"Prometheus at {self.url} answered {response.status_code}: not its API")
        if body["status"] != "success":
            what = (params or {}).get("query", path)
            raise PrometheusQueryError(f"{what}: {body.get('errorType', 'error')}: {body.get('error', '')}")
        return body["data"]

    def query(self, expr: str, *, at: datetime | float | None = None) -> list[dict[str, Any]]:
        """The raw `result` of an instant query (a vector's series, or `[time, value]` for a scalar)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = _timestamp(at)
        data = self._get("/api/v1/query", params)
        if data["resultType"] in {"scalar", "string"}:
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def samples(self, expr: str, *, at: datetime | float | None = None) -> list[Sample]:
        """An instant query's series as `Sample`s."""
        return [Sample(dict(item["metric"]), float(item["value"][1])) for item in self.query(expr, at=at)]

    def value(self, expr: str, *, at: datetime | float | None = None) -> float | None:
        """The value of a query expected to give at most one series (None when it gives none)."""
        found = self.samples(expr, at=at)
        if len(found) > 1:
            raise PrometheusQueryError(f"{expr}: {len(found)} series where at most one was expected")
        return found[0].value if found else None

    def query_range(
        self, expr: str, start: datetime | float, end: datetime | float, step: float
    ) -> list[dict[str, Any]]:
        """The raw `result` of a range query: each series' `metric` and `values` ([time, "value"] pairs)."""
        params = {"query": expr, "start": _timestamp(start), "end": _timestamp(end), "step": step}
        result: list[dict[str, Any]] = self._get("/api/v1/query_range", params)["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts the rules hold now, firing and pending (labels, annotations, state, activeAt, value)."""
        result: list[dict[str, Any]] = self._get("/api/v1/alerts")["alerts"]
        return result

    def rules(self, *, kind: str | None = None) -> list[dict[str, Any]]:
        """Rule groups as loaded (`kind`: "alert" or "record" to filter)."""
        params = {"type": kind} if kind else None
        groups: list[dict[str, Any]] = self._get("/api/v1/rules", params)["groups"]
        return groups

    def status_config(self) -> str:
        """The configuration Prometheus runs with, as YAML text (GET /api/v1/status/config)."""
        text: str = self._get("/api/v1/status/config")["yaml"]
        return text

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets (labels, health, lastError, scrapeUrl)."""
        active: list[dict[str, Any]] = self._get("/api/v1/targets", {"state": "active"})["activeTargets"]
        return active
