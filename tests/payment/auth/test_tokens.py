"""Access tokens: every defect is a 401 problem with a clear type, never a 500; keys rotate by `kid`."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from payment.auth.errors import Unauthorized
from payment.auth.principal import Role
from payment.auth.tokens import Keyring
from payment.core.config import Settings
from tests.payment.auth.conftest import assert_problem, auth_settings
from tests.payment.conftest import WALLET
from tests.support.auth import bearer

ME = "/api/v1/auth/me"
SECRET = b"musdpay-tests-jwt-secret-0123456789abcdef"  # JWT_KEYS' "test-1"


def claims(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "iss": "musdpay",
        "aud": "musdpay-api",
        "sub": WALLET,
        "role": "wallet",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": "t1",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def token(key: bytes = SECRET, kid: str = "test-1", typ: str = "at+jwt", alg: str = "HS256", **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers={"kid": kid, "typ": typ})


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_a_valid_token_identifies_the_wallet(client: TestClient) -> None:
    response = client.get(ME, headers=bearer(token()))
    assert response.status_code == 200, response.text
    assert response.json() == {"kind": "wallet", "subject": WALLET, "role": "wallet"}


def forge(valid: str) -> str:
    """The same header and claims with another signature (its first character changed)."""
    header, body, signature = valid.split(".")
    return f"{header}.{body}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


def unsigned_none_token() -> str:
    header = b64({"alg": "none", "typ": "at+jwt", "kid": "test-1"})
    return f"{header}.{b64(claims(exp=int((datetime.now(UTC) + timedelta(minutes=5)).timestamp()), iat=0, nbf=0))}."


BAD_TOKENS: list[tuple[str, Any, str]] = [
    ("garbage", lambda: "not-a-jwt", "invalid-token"),
    ("forged signature", lambda: forge(token()), "invalid-token"),
    ("alg none", unsigned_none_token, "invalid-token"),
    ("alg HS512", lambda: token(alg="HS512", key=SECRET * 2), "invalid-token"),
    ("expired", lambda: token(exp=datetime.now(UTC) - timedelta(minutes=1)), "token-expired"),
    ("not yet valid", lambda: token(nbf=datetime.now(UTC) + timedelta(minutes=5)), "invalid-token"),
    ("wrong audience", lambda: token(aud="another-api"), "invalid-token"),
    ("wrong issuer", lambda: token(iss="someone-else"), "invalid-token"),
    ("wrong key", lambda: token(key=b"another-secret-of-at-least-32-bytes!!"), "invalid-token"),
    ("unknown kid", lambda: token(kid="retired-9"), "invalid-token"),
    ("missing exp", lambda: token(exp=None), "invalid-token"),
    ("missing aud", lambda: token(aud=None), "invalid-token"),
    ("not an access token", lambda: token(typ="JWT"), "invalid-token"),
    ("operator role claimed", lambda: token(role="operator"), "invalid-token"),
    ("subject not an address", lambda: token(sub="admin"), "invalid-token"),
]


@pytest.mark.parametrize(("case", "make", "slug"), BAD_TOKENS, ids=[c[0] for c in BAD_TOKENS])
def test_bad_tokens_are_401_problems(client: TestClient, case: str, make: Any, slug: str) -> None:
    response = client.get(ME, headers=bearer(make()))
    assert_problem(response, 401, slug)
    assert response.headers["www-authenticate"].startswith("Bearer ")


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc"],
)
def test_malformed_authorization_headers_are_401_problems(client: TestClient, header: str) -> None:
    assert_problem(client.get(ME, headers={"Authorization": header}), 401, "invalid-credentials")


def test_no_credentials_is_401_authentication_required(client: TestClient) -> None:
    response = client.get(ME)
    assert_problem(response, 401, "authentication-required")
    assert response.headers["www-authenticate"] == 'Bearer realm="musdpay"'


def test_a_new_key_can_be_added_and_the_old_one_retired_without_logging_everyone_out(database_url: str) -> None:
    old_secret, new_secret = "o" * 32, "n" * 40
    before = auth_settings(database_url, jwt_keys=f"k-old:{old_secret}")
    during = auth_settings(database_url, jwt_keys=f"k-old:{old_secret},k-new:{new_secret}", jwt_active_kid="k-new")
    after = auth_settings(database_url, jwt_keys=f"k-new:{new_secret}")
    issued_before, _ = Keyring.from_settings(before).issue(subject=WALLET, role=Role.wallet)
    issued_during, _ = Keyring.from_settings(during).issue(subject=WALLET, role=Role.wallet)
    assert jwt.get_unverified_header(issued_during)["kid"] == "k-new"
    # While both keys are configured, tokens of either verify: nobody is logged out by the switch.
    assert Keyring.from_settings(during).verify(issued_before).subject == WALLET
    assert Keyring.from_settings(after).verify(issued_during).subject == WALLET
    with pytest.raises(Exception, match="unknown signing key"):
        Keyring.from_settings(after).verify(issued_before)


def test_issued_tokens_carry_every_checked_claim(settings: Settings) -> None:
    issued, expires = Keyring.from_settings(settings).issue(subject=WALLET, role=Role.wallet)
    header = jwt.get_unverified_header(issued)
    assert (header["alg"], header["typ"], header["kid"]) == ("HS256", "at+jwt", "test-1")
    body = jwt.decode(issued, options={"verify_signature": False})
    assert set(body) >= {"iss", "aud", "sub", "role", "iat", "nbf", "exp", "jti"}
    assert body["exp"] - body["iat"] == settings.access_token_ttl_seconds == 900
    assert expires.timestamp() == body["exp"]


def test_a_token_checked_once_is_still_refused_once_it_expires(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring = Keyring.from_settings(settings)
    token, expires = keyring.issue(subject=WALLET, role=Role.wallet)
    first = keyring.verify(token)
    assert keyring.verify(token) == first  # the second check is served from the verified-token cache
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(Unauthorized, match="signature"):
        keyring.verify(forged)  # a different text is never a cache hit
    later = expires.timestamp() + 6  # past the expiry and its 5 s leeway
    monkeypatch.setattr("payment.auth.tokens.time.time", lambda: later)
    with pytest.raises(Unauthorized, match="expired"):
        keyring.verify(token)
