"""The capture SMTP server (aiosmtpd): accepts every message, optionally checks AUTH credentials, and keeps the
parsed message with what RFC 5322 says is missing. No TLS: Alertmanager's `smtp_require_tls: false` locally."""

from __future__ import annotations

import warnings
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from sandbox.receivers.formats import parse_email, validate_email
from sandbox.receivers.store import ReceivedStore

__all__ = ["CaptureHandler", "smtp_protocol_factory"]


class CaptureHandler:
    def __init__(self, store: ReceivedStore) -> None:
        self.store = store

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # aiosmtpd's hook name
        content = envelope.original_content or b""
        message = parse_email(content)
        body = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        login = getattr(session, "auth_data", None)
        payload: dict[str, Any] = {
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(message["Subject"] or ""),
            "headers": {key: str(value) for key, value in message.items()},
            "text": body.get_content() if body is not None else "",
            "html": html.get_content() if html is not None else "",
            "authUser": login.login.decode() if isinstance(login, LoginPassword) else None,
        }
        self.store.add("email", ",".join(envelope.rcpt_tos), payload, validate_email(message))
        return "250 Message accepted for delivery"


class _CaptureSMTP(SMTP):
    # The challenges real servers (Postfix, Gmail) send, which Go's and Alertmanager's LOGIN clients expect.
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"


def smtp_protocol_factory(store: ReceivedStore, credentials: tuple[str, str] | None) -> SMTP:
    """One SMTP protocol instance per connection (for `loop.create_server`)."""

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if credentials is None:
            return AuthResult(success=True, auth_data=data)
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == credentials
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    with warnings.catch_warnings():
        # AUTH without TLS is the point of a local capture server (Alertmanager's smtp_require_tls: false).
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
        return _CaptureSMTP(
            CaptureHandler(store),
            hostname="musdpay-receivers",
            authenticator=authenticate,
            auth_require_tls=False,
            auth_required=credentials is not None,
        )
