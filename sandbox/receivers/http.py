"""The capture receivers' HTTP side (aiohttp): the webhook endpoints, a JSON API and a page listing what came in.

- `POST /slack/{anything}`: a Slack incoming webhook (`https://hooks.slack.com/services/T../B../...`);
  200 `ok`, or 400 `invalid_payload` / `no_text`.
- `POST /discord/api/webhooks/{id}/{token}`: a Discord webhook; 204 (200 with the message for `?wait=true`), or
  400 with Discord's error object.
- `POST /pagerduty/v2/enqueue`: PagerDuty's Events API v2; 202 `{"status": "success", "dedup_key": ...}`, or
  400 `invalid event`.
- `POST /heartbeat`: a dead man's switch for Alertmanager's webhook (the Watchdog's heartbeats); 200, or 400 with
  the problems of a payload that is not Alertmanager's. Kept apart from what was received (one a minute).
- `GET /api/heartbeat`: the last heartbeat, how many, and `stale` when none came within the window.
- `GET /api/received[?kind=]`, `DELETE /api/received`: what was received (JSON), or forget it.
- `GET /api/faults`, `PUT /api/faults` `{"slack": 500}`: make a receiver answer an error status (faults.py).
- `GET /`: the same as a page, the heartbeat's state first; `GET /healthz`.
"""

from __future__ import annotations

import hashlib
import html
import json
from typing import Any

from aiohttp import web

from sandbox.receivers.faults import FAILABLE, ReceiverFaults, ReceiverFaultsError
from sandbox.receivers.formats import (
    validate_alertmanager_webhook,
    validate_discord,
    validate_pagerduty,
    validate_slack,
)
from sandbox.receivers.heartbeat import HeartbeatStore
from sandbox.receivers.store import KINDS, ReceivedStore

__all__ = ["FAULTS_KEY", "HEARTBEAT_KEY", "STORE_KEY", "build_app"]

STORE_KEY = web.AppKey("store", ReceivedStore)
HEARTBEAT_KEY = web.AppKey("heartbeat", HeartbeatStore)
FAULTS_KEY = web.AppKey("faults", ReceiverFaults)


@web.middleware
async def _injected_failures(request: web.Request, handler: Any) -> web.StreamResponse:
    # Before the receiver's own handler, so a refused request is not recorded as received.
    kind = request.path.split("/", 2)[1] if request.method == "POST" else ""
    if kind in FAILABLE and (status := request.app[FAULTS_KEY].refuse(kind)) is not None:
        return web.json_response({"error": f"injected failure of the {kind} receiver"}, status=status)
    response: web.StreamResponse = await handler(request)
    return response


async def faults(request: web.Request) -> web.Response:
    store = request.app[FAULTS_KEY]
    if request.method == "PUT":
        body, error = await _json_body(request)
        try:
            if error:
                raise ReceiverFaultsError(error)
            store.set(body)
        except ReceiverFaultsError as exc:
            return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(store.as_json())


async def _json_body(request: web.Request) -> tuple[Any, str | None]:
    if request.content_type != "application/json":
        return None, f"Content-Type must be application/json (got {request.content_type or 'none'})"
    try:
        return await request.json(), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"the body is not JSON: {exc}"


async def slack(request: web.Request) -> web.Response:
    payload, error = await _json_body(request)
    problems = [error] if error else validate_slack(payload)
    request.app[STORE_KEY].add("slack", request.path, payload, problems)
    if problems:
        return web.Response(status=400, text="no_text" if problems[0].startswith("no_text") else "invalid_payload")
    return web.Response(text="ok")


async def discord(request: web.Request) -> web.Response:
    payload, error = await _json_body(request)
    problems = [error] if error else validate_discord(payload)
    request.app[STORE_KEY].add("discord", request.path, payload, problems)
    if problems:
        return web.json_response({"message": "Invalid Form Body", "code": 50035, "errors": problems}, status=400)
    if request.query.get("wait") == "true":
        item = request.app[STORE_KEY].items("discord")[-1]
        message = {"id": str(item.id), "content": payload.get("content", ""), "embeds": payload.get("embeds", [])}
        return web.json_response(message)
    return web.Response(status=204)


async def pagerduty(request: web.Request) -> web.Response:
    payload, error = await _json_body(request)
    problems = [error] if error else validate_pagerduty(payload)
    request.app[STORE_KEY].add("pagerduty", request.path, payload, problems)
    if problems:
        return web.json_response(
            {"status": "invalid event", "message": "Event object is invalid", "errors": problems}, status=400
        )
    dedup = payload.get("dedup_key") or hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
    return web.json_response({"status": "success", "message": "Event processed", "dedup_key": dedup}, status=202)


async def heartbeat(request: web.Request) -> web.Response:
    payload, error = await _json_body(request)
    problems = [error] if error else validate_alertmanager_webhook(payload)
    store = request.app[HEARTBEAT_KEY]
    if problems:
        store.reject(problems)
        return web.json_response({"status": "invalid", "errors": problems}, status=400)
    beat = store.record(payload)
    return web.json_response({"status": "ok", "heartbeat": beat})


async def heartbeat_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[HEARTBEAT_KEY].state().as_json())


async def received(request: web.Request) -> web.Response:
    kind = request.query.get("kind")
    if kind is not None and kind not in KINDS:
        return web.json_response({"error": f"kind must be one of {', '.join(KINDS)}"}, status=400)
    return web.json_response({"data": [item.as_json() for item in request.app[STORE_KEY].items(kind)]})


async def clear(request: web.Request) -> web.Response:
    request.app[STORE_KEY].clear()
    return web.json_response({"data": []})


def _summary(kind: str, payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    if kind == "slack":
        first = (payload.get("attachments") or [{}])[0]
        return str(payload.get("text") or (first.get("title") if isinstance(first, dict) else "") or "")
    if kind == "discord":
        first = (payload.get("embeds") or [{}])[0]
        return str(payload.get("content") or (first.get("title") if isinstance(first, dict) else "") or "")
    if kind == "pagerduty":
        body = payload.get("payload") or {}
        return f"{payload.get('event_action')}: {body.get('summary', payload.get('dedup_key', ''))}"
    return str(payload.get("subject", ""))


def _heartbeat_html(store: HeartbeatStore) -> str:
    state = store.state()
    last = f"{state.last_seen:%H:%M:%S} UTC" if state.last_seen else "never"
    verdict = (
        f"<strong style='color:#b00'>STALE</strong>: none within {state.stale_after:g} s"
        if state.stale
        else f"<strong style='color:#080'>alive</strong> (stale after {state.stale_after:g} s)"
    )
    names = html.escape(", ".join(state.last_alertnames)) or "none"
    return (
        f"<h2>Heartbeat</h2><p>{verdict}. Last: {last} ({names}); {state.count} received, {state.rejected} refused. "
        "Alertmanager posts its Watchdog to <code>/heartbeat</code>. JSON: "
        "<a href='/api/heartbeat'>/api/heartbeat</a>.</p>"
    )


async def page(request: web.Request) -> web.Response:
    rows = []
    for item in reversed(request.app[STORE_KEY].items()):
        status = "valid" if item.valid else "INVALID: " + "; ".join(item.errors)
        rows.append(
            "<tr>"
            f"<td>{item.id}</td><td>{item.received_at:%H:%M:%S}</td><td>{item.kind}</td>"
            f"<td>{html.escape(_summary(item.kind, item.payload))}</td><td>{html.escape(status)}</td>"
            f"<td><details><summary>payload</summary><pre>{html.escape(json.dumps(item.payload, indent=2))}</pre>"
            "</details></td></tr>"
        )
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>musdpay capture receivers</title>"
        "<style>body{font-family:sans-serif}td{border-top:1px solid #ccc;padding:4px;vertical-align:top}</style>"
        "</head><body>" + _heartbeat_html(request.app[HEARTBEAT_KEY]) + "<h1>Notifications received</h1>"
        "<p>Slack <code>/slack/...</code>, Discord <code>/discord/api/webhooks/ID/TOKEN</code>, PagerDuty "
        "<code>/pagerduty/v2/enqueue</code>, email over SMTP. JSON: <a href='/api/received'>/api/received</a>.</p>"
        "<table><tr><th>#</th><th>time (UTC)</th><th>kind</th><th>summary</th><th>format</th><th></th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
    return web.Response(text=body, content_type="text/html")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(
    store: ReceivedStore, heartbeats: HeartbeatStore | None = None, injected: ReceiverFaults | None = None
) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[_injected_failures])
    app[STORE_KEY] = store
    app[HEARTBEAT_KEY] = heartbeats or HeartbeatStore()
    app[FAULTS_KEY] = injected or ReceiverFaults()
    app.router.add_post("/slack/{path:.*}", slack)
    app.router.add_post("/discord/api/webhooks/{id}/{token}", discord)
    app.router.add_post("/pagerduty/v2/enqueue", pagerduty)
    app.router.add_post("/heartbeat", heartbeat)
    app.router.add_get("/api/heartbeat", heartbeat_state)
    app.router.add_get("/api/received", received)
    app.router.add_delete("/api/received", clear)
    app.router.add_get("/api/faults", faults)
    app.router.add_put("/api/faults", faults)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", page)
    return app
