"""HTTP routes of authentication (/api/v1/auth) and API key administration (/api/v1/admin); thin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response, status

from payment.auth import apikeys, audit, signin
from payment.auth.principal import Principal, Role
from payment.auth.rbac import ANY_ROLE, enforce_route_policy, public_route, require_roles
from payment.auth.runtime import AuthRuntime
from payment.auth.schemas import (
    ApiKeyOut,
    AuditEventOut,
    CreateApiKeyRequest,
    CreatedApiKeyOut,
    MeOut,
    NonceOut,
    RefreshRequest,
    RotateApiKeyRequest,
    TokenOut,
    VerifyRequest,
)
from payment.auth.signatures import pool_eth_call
from payment.core.openapi import problem_responses
from payment.core.problems import FieldError, ValidationProblem
from payment.deps import AppState, StateDep, client_ip

__all__ = ["admin_router", "install_auth", "router"]

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

Public = Depends(public_route)
Anyone = Annotated[Principal, Depends(require_roles(*ANY_ROLE))]
Admin = Annotated[Principal, Depends(require_roles(Role.admin))]
_NO_STORE = {"Cache-Control": "no-store"}  # answers that carry tokens or keys
_KEY_ID = Path(pattern=r"^[0-9a-f]{16}$")


def install_auth(app: FastAPI) -> None:
    """Authentication for the whole app; call it before including any router (this module's `router` and
    `admin_router` included), so every route added after it runs the route-policy guard. Raises SettingsError
    outside development without a JWT key."""
    state: AppState = app.state.musdpay
    state.auth_runtime = AuthRuntime.from_settings(state.settings)
    chain = getattr(state, "chain", None)
    if chain is not None:  # EIP-1271 checks through the provider pool (failover, health, metrics)
        state.auth_runtime.eth_call = pool_eth_call(chain.pool)
    app.router.dependencies.insert(0, Depends(enforce_route_policy))


def _origin(request: Request, state: AppState) -> str | None:
    """Where a request comes from, for the audit log: the client IP (behind trusted proxies: the forwarded one)."""
    return client_ip(request, state.settings) or (request.client.host if request.client else None)


def _tokens(pair: signin.TokenPair, state: AppState) -> Response:
    out = TokenOut(
        access_token=pair.access_token,
        expires_in=state.settings.access_token_ttl_seconds,
        expires_at=pair.access_expires_at,
        refresh_token=pair.refresh_token,
        refresh_expires_at=pair.refresh_expires_at,
        wallet_address=pair.subject,
    )
    return Response(out.model_dump_json(by_alias=True), media_type="application/json", headers=_NO_STORE)


@router.post(
    "/nonce",
    status_code=status.HTTP_201_CREATED,
    response_model=NonceOut,
    dependencies=[Public],
    summary="A single-use nonce for a Sign-In with Ethereum message",
)
async def create_nonce(state: StateDep) -> NonceOut:
    nonce = await state.run_db(
        signin.issue_nonce, factory=state.factory, ttl_seconds=state.settings.siwe_nonce_ttl_seconds
    )
    return NonceOut(nonce=nonce.value, expires_at=nonce.expires_at, chain_id=state.settings.chain_id)


@router.post(
    "/verify",
    response_model=TokenOut,
    dependencies=[Public],
    responses=problem_responses(401, 422, 503),
    summary="Sign in: a signed EIP-4361 message for an access token and a refresh token",
)
async def verify(body: VerifyRequest, request: Request, state: StateDep) -> Response:
    pair = await signin.sign_in(
        run_db=state.run_db,
        factory=state.factory,
        keyring=state.auth.keyring,
        eth_call=state.auth.eth_call,
        settings=state.settings,
        message_text=body.message,
        signature=body.signature,
        origin=_origin(request, state),
    )
    return _tokens(pair, state)


@router.post(
    "/refresh",
    response_model=TokenOut,
    dependencies=[Public],
    responses=problem_responses(401, 422),
    summary="Spend a refresh token for a new access token and refresh token",
)
async def refresh(body: RefreshRequest, request: Request, state: StateDep) -> Response:
    pair = await state.run_db(
        signin.refresh,
        factory=state.factory,
        keyring=state.auth.keyring,
        presented=body.refresh_token,
        origin=_origin(request, state),
    )
    return _tokens(pair, state)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Public],
    summary="Revoke the refresh token's session (its whole family)",
)
async def logout(body: RefreshRequest, request: Request, state: StateDep) -> Response:
    await state.run_db(
        signin.logout,
        factory=state.factory,
        presented=body.refresh_token,
        origin=_origin(request, state),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=MeOut, responses=problem_responses(401), summary="Who the credentials are")
async def me(principal: Anyone) -> MeOut:
    assert principal.role is not None
    return MeOut(kind=principal.kind, subject=principal.subject, role=principal.role)


# --- admin ---------------------------------------------------------------------------------------------------


def _key_out(info: apikeys.ApiKeyInfo) -> ApiKeyOut:
    return ApiKeyOut(
        id=info.id,
        name=info.name,
        role=info.role,
        status=info.status(),
        created_at=info.created_at,
        created_by=info.created_by,
        expires_at=info.expires_at,
        revoked_at=info.revoked_at,
        replaced_by=info.replaced_by,
        last_used_at=info.last_used_at,
    )


def _created(issued: apikeys.IssuedKey) -> Response:
    out = CreatedApiKeyOut(**_key_out(issued.info).model_dump(), key=issued.key)
    body = out.model_dump_json(by_alias=True)
    return Response(body, status_code=201, media_type="application/json", headers=_NO_STORE)


def _actor(principal: Principal, request: Request, state: AppState) -> audit.Actor:
    return audit.Actor.of(principal, _origin(request, state))


@admin_router.get(
    "/api-keys", response_model=list[ApiKeyOut], responses=problem_responses(401, 403), summary="Every API key"
)
async def list_api_keys(state: StateDep, _admin: Admin) -> list[ApiKeyOut]:
    keys = await state.run_db(apikeys.list_keys, factory=state.factory)
    return [_key_out(info) for info in keys]


@admin_router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedApiKeyOut,
    responses=problem_responses(401, 403, 422),
    summary="Create an API key (shown once)",
)
async def create_api_key(body: CreateApiKeyRequest, request: Request, state: StateDep, admin: Admin) -> Response:
    if body.role is Role.wallet:
        raise ValidationProblem([FieldError("body.role", "must be operator or admin", "not_supported")])
    issued = await state.run_db(
        apikeys.create_key,
        factory=state.factory,
        name=body.name,
        role=body.role,
        actor=_actor(admin, request, state),
    )
    return _created(issued)


@admin_router.post(
    "/api-keys/{key_id}/rotate",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedApiKeyOut,
    responses=problem_responses(401, 403, 404, 409),
    summary="Issue a successor key; the old one stays valid for the grace period",
)
async def rotate_api_key(
    key_id: Annotated[str, _KEY_ID],
    request: Request,
    state: StateDep,
    admin: Admin,
    body: RotateApiKeyRequest | None = None,
) -> Response:
    grace = body.grace_seconds if body is not None and body.grace_seconds is not None else None
    issued = await state.run_db(
        apikeys.rotate_key,
        factory=state.factory,
        key_id=key_id,
        grace_seconds=grace if grace is not None else state.settings.api_key_rotation_grace_seconds,
        actor=_actor(admin, request, state),
    )
    return _created(issued)


@admin_router.post(
    "/api-keys/{key_id}/revoke",
    response_model=ApiKeyOut,
    responses=problem_responses(401, 403, 404),
    summary="Revoke an API key now",
)
async def revoke_api_key(key_id: Annotated[str, _KEY_ID], request: Request, state: StateDep, admin: Admin) -> ApiKeyOut:
    info = await state.run_db(
        apikeys.revoke_key, factory=state.factory, key_id=key_id, actor=_actor(admin, request, state)
    )
    return _key_out(info)


@admin_router.get(
    "/audit-events",
    response_model=list[AuditEventOut],
    responses=problem_responses(401, 403),
    summary="The audit log, newest first",
)
async def list_audit_events(
    state: StateDep,
    _admin: Admin,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> list[AuditEventOut]:
    events = await state.run_db(audit.list_events, factory=state.factory, limit=limit, action=action)
    return [AuditEventOut.model_validate(event, from_attributes=True) for event in events]
