"""Rendering alerts/alertmanager.yml for a deployment, and sending a test notification through Alertmanager.

`render` substitutes, in every string of the parsed YAML (so a value can never change the document's shape):
`${NAME}` and `${NAME:-default}` from the environment, and `${secret:NAME}` with the content of
`<MUSDPAY_ALERT_SECRETS_DIR>/NAME` (stripped). A string that was only a placeholder and renders to `true` or
`false` becomes a boolean (`smtp_require_tls`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from alerts.build import ALERTS_DIR

__all__ = [
    "ALERTMANAGER_SOURCE",
    "DEFAULT_SECRETS_DIR",
    "TEMPLATES_DIR",
    "TEST_RECEIVERS",
    "RenderError",
    "build_test_alert",
    "render",
    "render_file",
    "send_test_alert",
]

ALERTMANAGER_SOURCE = ALERTS_DIR / "alertmanager.yml"
TEMPLATES_DIR = ALERTS_DIR / "templates"
DEFAULT_SECRETS_DIR = "/etc/alertmanager/secrets"
TEST_RECEIVERS = ("slack", "discord", "pagerduty", "email")
_PLACEHOLDER = re.compile(r"\$\{(secret:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class RenderError(ValueError):
    """A variable is unset, or a secret file is missing."""


def _substitute(text: str, env: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        secret, name, default = match.group(1), match.group(2), match.group(3)
        if secret:
            path = Path(env.get("MUSDPAY_ALERT_SECRETS_DIR") or DEFAULT_SECRETS_DIR) / name
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise RenderError(f"secret {name}: cannot read {path}: {exc.strerror}") from exc
        if name in env and env[name] != "":
            return env[name]
        if default is None:
            raise RenderError(f"${{{name}}} is not set and has no default")
        return default

    return _PLACEHOLDER.sub(value, text)


def _walk(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        rendered = _substitute(node, env)
        if _PLACEHOLDER.fullmatch(node) and rendered in {"true", "false"}:
            return rendered == "true"
        return rendered
    if isinstance(node, list):
        return [_walk(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, env) for key, value in node.items()}
    return node


def render(text: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The configuration `text` (alertmanager.yml's syntax) with every placeholder substituted from `env`."""
    rendered: dict[str, Any] = _walk(yaml.safe_load(text), env)
    return rendered


def render_file(env: Mapping[str, str], source: Path = ALERTMANAGER_SOURCE) -> str:
    """alerts/alertmanager.yml rendered, as YAML text Alertmanager reads."""
    header = f"# Rendered from {source.name} by `musdpay alerts render`; secrets stay in *_file fields.\n"
    body = yaml.safe_dump(render(source.read_text(encoding="utf-8"), env), sort_keys=False, width=10_000)
    return header + body


def build_test_alert(receiver: str, *, minutes: int = 5) -> dict[str, Any]:
    """An alert for Alertmanager's API that its `test_receiver` route sends to `receiver` alone."""
    if receiver not in TEST_RECEIVERS:
        raise ValueError(f"receiver is one of {', '.join(TEST_RECEIVERS)}")
    now = datetime.now(UTC)
    test_id = uuid.uuid4().hex[:12]
    return {
        "labels": {
            "alertname": "AlertingTestNotification",
            "severity": "info",
            "service": "alerting",
            "test_receiver": receiver,
            "test_id": test_id,
        },
        "annotations": {
            "summary": f"Test notification to {receiver} from musdpay (test id {test_id})",
            "description": "Sent by `musdpay alerts test`: the route, the template and the secret work.",
            "runbook_url": "https://github.com/musdpay/musdpay/blob/main/docs/alerts.md",
            "dashboard_url": "http://localhost:3000/d/musdpay-slos",
        },
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=minutes)).isoformat(),
        "generatorURL": "https://github.com/musdpay/musdpay/blob/main/docs/alerts.md",
    }


def send_test_alert(alertmanager_url: str, receiver: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """POST a test alert to Alertmanager's v2 API; returns the alert sent."""
    alert = build_test_alert(receiver)
    response = httpx.post(f"{alertmanager_url.rstrip('/')}/api/v2/alerts", json=[alert], timeout=timeout)
    response.raise_for_status()
    return alert
