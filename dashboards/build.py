"""Write dashboards/json/<uid>.json from dashboards/definitions.py (`python -m dashboards`); `check()` lists the
files that differ (a test fails on any)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards.definitions import DASHBOARDS

__all__ = ["JSON_DIR", "build", "check", "panels", "write"]

JSON_DIR = Path(__file__).resolve().parent / "json"


def build() -> dict[str, str]:
    """uid -> the dashboard's JSON text."""
    return {
        uid: JSONEncoder(sort_keys=True, indent=2).encode(make().build()) + "\n" for uid, make in DASHBOARDS.items()
    }


def write(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(exist_ok=True)
    built = build()
    for stale in directory.glob("*.json"):
        if stale.stem not in built:
            stale.unlink()
    paths = []
    for uid, text in built.items():
        path = directory / f"{uid}.json"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def check(directory: Path = JSON_DIR) -> list[str]:
    built = build()
    problems = [
        f"{uid}.json"
        for uid, text in built.items()
        if not (directory / f"{uid}.json").exists() or (directory / f"{uid}.json").read_text(encoding="utf-8") != text
    ]
    return sorted(problems + [path.name for path in directory.glob("*.json") if path.stem not in built])


def panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel of a dashboard's JSON (rows' nested panels included), rows themselves excluded."""
    found: list[dict[str, Any]] = []
    for panel in document.get("panels", []):
        if panel.get("type") == "row":
            found.extend(panel.get("panels") or [])
        else:
            found.append(panel)
    return found


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document
