"""The audit log: one row per security-relevant action, written in the same transaction as the action.

Callers pass the open Connection of their transaction, so the action and its record commit or roll back
together. Details are small JSON objects and never hold a secret (key ids and names, not keys).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.orm import Session, sessionmaker

from payment.auth.models import AuditEvent
from payment.auth.principal import Principal

__all__ = ["Actor", "list_events", "record"]


@dataclass(frozen=True)
class Actor:
    """Who acts and from where, as the audit log records it."""

    name: str
    role: str | None = None
    origin: str | None = None

    @classmethod
    def of(cls, principal: Principal, origin: str | None) -> Actor:
        if not principal.authenticated:
            return cls(name="anonymous", origin=origin)
        role = principal.role.value if principal.role is not None else None
        return cls(name=f"{principal.kind}:{principal.subject}", role=role, origin=origin)


def record(
    conn: Connection,
    *,
    actor: Actor,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    conn.execute(
        insert(AuditEvent).values(
            at=at or datetime.now(UTC),
            actor=actor.name[:128],
            actor_role=actor.role,
            action=action,
            target=target,
            origin=(actor.origin or None) and actor.origin[:64],
            detail=json.dumps(detail, sort_keys=True, default=str) if detail else None,
        )
    )


def list_events(*, factory: sessionmaker[Session], limit: int = 100, action: str | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    with factory() as db:
        return list(db.scalars(query).all())
