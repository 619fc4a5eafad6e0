"""What each service accepts, as documented, checked field by field. Each validator returns a list of problems
(empty: the service would accept the payload).

- Slack incoming webhooks (https://api.slack.com/messaging/webhooks, https://api.slack.com/reference/messaging/
  attachments): a JSON object with `text`, `blocks` or `attachments`; at most 50 blocks and 100 attachments;
  `text` up to 40,000 characters; an attachment needs `fallback` or `text` (its notification text), `fields`
  are `{title, value, short}`.
- Discord webhooks (https://discord.com/developers/docs/resources/webhook#execute-webhook): `content`,
  `embeds`, `components`, `poll` or a file; `content` up to 2,000 characters, `username` up to 80, up to 10
  embeds with title <= 256, description <= 4,096, up to 25 fields (name <= 256, value <= 1,024), footer <= 2,048,
  and 6,000 characters over all the embeds' texts; `color` an integer.
- PagerDuty Events API v2 (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/): `routing_key`
  (the 32-character integration key) and `event_action` (`trigger`, `acknowledge`, `resolve`); `dedup_key` up
  to 255 characters, required to acknowledge or resolve; a trigger needs `payload` with `summary` (<= 1,024),
  `source` and `severity` (`critical`, `error`, `warning`, `info`), and optionally `timestamp` (ISO 8601),
  `component`, `group`, `class`, `custom_details`; `links` are `{href, text}`, `images` `{src, href, alt}`.
- Email: an RFC 5322 message with `From`, `To`, `Subject`, `Date` and a body.
- Alertmanager's webhook (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config), what a dead
  man's switch receives: `version` "4", `status` (`firing`, `resolved`), `receiver`, `groupKey`, `groupLabels`,
  `commonLabels`, `commonAnnotations`, `externalURL`, and `alerts`: each with `status`, `labels` (an `alertname`),
  `annotations`, `startsAt`, `endsAt` (RFC 3339), `generatorURL` and `fingerprint`.
"""

from __future__ import annotations

import email.policy
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

__all__ = [
    "PAGERDUTY_SEVERITIES",
    "parse_email",
    "validate_alertmanager_webhook",
    "validate_discord",
    "validate_email",
    "validate_pagerduty",
    "validate_slack",
]

PAGERDUTY_SEVERITIES = frozenset({"critical", "error", "warning", "info"})
_PAGERDUTY_ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})
_ALERT_STATUSES = frozenset({"firing", "resolved"})


def _string(problems: list[str], obj: dict[str, Any], key: str, limit: int, where: str) -> None:
    value = obj.get(key)
    if value is None:
        return
    if not isinstance(value, str):
        problems.append(f"{where}{key} must be a string")
    elif len(value) > limit:
        problems.append(f"{where}{key} is {len(value)} characters (at most {limit})")


def validate_slack(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["the body must be a JSON object"]
    problems: list[str] = []
    if not any(payload.get(key) for key in ("text", "blocks", "attachments")):
        problems.append("no_text: one of text, blocks or attachments is required")
    _string(problems, payload, "text", 40_000, "")
    for key in ("channel", "username", "icon_emoji", "icon_url"):
        _string(problems, payload, key, 1_000, "")
    blocks = payload.get("blocks")
    if blocks is not None and (not isinstance(blocks, list) or len(blocks) > 50):
        problems.append("blocks must be a list of at most 50 blocks")
    elif isinstance(blocks, list):
        for i, block in enumerate(blocks):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                problems.append(f"blocks[{i}] must be an object with a type")
    attachments = payload.get("attachments")
    if attachments is not None and (not isinstance(attachments, list) or len(attachments) > 100):
        problems.append("attachments must be a list of at most 100 attachments")
    elif isinstance(attachments, list):
        for i, attachment in enumerate(attachments):
            where = f"attachments[{i}]."
            if not isinstance(attachment, dict):
                problems.append(f"attachments[{i}] must be an object")
                continue
            if not (attachment.get("fallback") or attachment.get("text") or attachment.get("blocks")):
                problems.append(f"{where}fallback or text is required")
            for key in ("fallback", "text", "title", "title_link", "pretext", "color", "footer"):
                _string(problems, attachment, key, 40_000, where)
            fields = attachment.get("fields")
            if fields is not None:
                if not isinstance(fields, list):
                    problems.append(f"{where}fields must be a list")
                else:
                    for j, field in enumerate(fields):
                        if not isinstance(field, dict) or not isinstance(field.get("title", ""), str):
                            problems.append(f"{where}fields[{j}] must be an object with a string title")
                        elif not isinstance(field.get("value", ""), str):
                            problems.append(f"{where}fields[{j}].value must be a string")
    return problems


def validate_discord(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["the body must be a JSON object"]
    problems: list[str] = []
    if not any(payload.get(key) for key in ("content", "embeds", "components", "poll", "attachments")):
        problems.append("Cannot send an empty message (content, embeds, components or poll is required)")
    _string(problems, payload, "content", 2_000, "")
    _string(problems, payload, "username", 80, "")
    embeds = payload.get("embeds")
    if embeds is None:
        return problems
    if not isinstance(embeds, list) or len(embeds) > 10:
        return [*problems, "embeds must be a list of at most 10 embeds"]
    total = 0
    for i, embed in enumerate(embeds):
        where = f"embeds[{i}]."
        if not isinstance(embed, dict):
            problems.append(f"embeds[{i}] must be an object")
            continue
        _string(problems, embed, "title", 256, where)
        _string(problems, embed, "description", 4_096, where)
        _string(problems, embed, "url", 2_048, where)
        if "color" in embed and not (isinstance(embed["color"], int) and 0 <= embed["color"] <= 0xFFFFFF):
            problems.append(f"{where}color must be an integer from 0 to 0xFFFFFF")
        total += len(str(embed.get("title") or "")) + len(str(embed.get("description") or ""))
        footer = embed.get("footer")
        if isinstance(footer, dict):
            _string(problems, footer, "text", 2_048, f"{where}footer.")
            total += len(str(footer.get("text") or ""))
        fields = embed.get("fields") or []
        if not isinstance(fields, list) or len(fields) > 25:
            problems.append(f"{where}fields must be a list of at most 25 fields")
            continue
        for j, field in enumerate(fields):
            if not isinstance(field, dict) or not field.get("name") or not field.get("value"):
                problems.append(f"{where}fields[{j}] needs a name and a value")
                continue
            _string(problems, field, "name", 256, f"{where}fields[{j}].")
            _string(problems, field, "value", 1_024, f"{where}fields[{j}].")
            total += len(str(field["name"])) + len(str(field["value"]))
    if total > 6_000:
        problems.append(f"the embeds hold {total} characters (at most 6000)")
    return problems


def validate_pagerduty(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["the body must be a JSON object"]
    problems: list[str] = []
    key = payload.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        problems.append("routing_key must be the 32-character integration key")
    action = payload.get("event_action")
    if action not in _PAGERDUTY_ACTIONS:
        problems.append("event_action must be trigger, acknowledge or resolve")
    dedup = payload.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        problems.append("dedup_key must be a string of at most 255 characters")
    if action in {"acknowledge", "resolve"} and not dedup:
        problems.append(f"dedup_key is required to {action}")
    if action == "trigger":
        body = payload.get("payload")
        if not isinstance(body, dict):
            problems.append("payload is required to trigger")
        else:
            summary = body.get("summary")
            if not isinstance(summary, str) or not summary:
                problems.append("payload.summary is required")
            elif len(summary) > 1_024:
                problems.append(f"payload.summary is {len(summary)} characters (at most 1024)")
            if not isinstance(body.get("source"), str) or not body["source"]:
                problems.append("payload.source is required")
            if body.get("severity") not in PAGERDUTY_SEVERITIES:
                problems.append("payload.severity must be critical, error, warning or info")
            timestamp = body.get("timestamp")
            if timestamp is not None:
                try:
                    datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
                except ValueError:
                    problems.append("payload.timestamp must be an ISO 8601 timestamp")
            details = body.get("custom_details")
            if details is not None and not isinstance(details, dict | str):
                problems.append("payload.custom_details must be an object")
    for i, link in enumerate(payload.get("links") or []):
        if not isinstance(link, dict) or not isinstance(link.get("href"), str) or not link["href"]:
            problems.append(f"links[{i}] needs an href")
    for i, image in enumerate(payload.get("images") or []):
        if not isinstance(image, dict) or not isinstance(image.get("src"), str) or not image["src"]:
            problems.append(f"images[{i}] needs a src")
    return problems


def parse_email(data: bytes) -> EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def validate_email(message: EmailMessage) -> list[str]:
    headers = ("From", "To", "Subject", "Date")
    problems = [f"the {header} header is missing" for header in headers if not message[header]]
    body = message.get_body(preferencelist=("html", "plain"))
    if body is None or not body.get_content().strip():
        problems.append("the message has no text or HTML body")
    return problems


def _timestamp(value: Any) -> bool:
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return False
    return isinstance(value, str)


def validate_alertmanager_webhook(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["the body must be a JSON object"]
    problems: list[str] = []
    if payload.get("version") != "4":
        problems.append('version must be "4"')
    if payload.get("status") not in _ALERT_STATUSES:
        problems.append("status must be firing or resolved")
    for key in ("receiver", "groupKey", "externalURL"):
        if not isinstance(payload.get(key), str):
            problems.append(f"{key} must be a string")
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        if not isinstance(payload.get(key), dict):
            problems.append(f"{key} must be an object")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        return [*problems, "alerts must be a non-empty list"]
    for i, alert in enumerate(alerts):
        where = f"alerts[{i}]."
        if not isinstance(alert, dict):
            problems.append(f"alerts[{i}] must be an object")
            continue
        if alert.get("status") not in _ALERT_STATUSES:
            problems.append(f"{where}status must be firing or resolved")
        labels = alert.get("labels")
        if not isinstance(labels, dict) or not isinstance(labels.get("alertname"), str):
            problems.append(f"{where}labels must be an object with an alertname")
        if not isinstance(alert.get("annotations"), dict):
            problems.append(f"{where}annotations must be an object")
        for key in ("startsAt", "endsAt"):
            if not _timestamp(alert.get(key)):
                problems.append(f"{where}{key} must be an RFC 3339 timestamp")
        for key in ("generatorURL", "fingerprint"):
            if not isinstance(alert.get(key), str):
                problems.append(f"{where}{key} must be a string")
    return problems
