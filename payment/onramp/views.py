"""HTTP routes of the onramp domain; thin: parse, call the service, shape the response."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status

from payment.auth.errors import Forbidden
from payment.auth.rbac import ANY_ROLE, require_roles
from payment.core.config import DeliveryMode
from payment.core.openapi import problem_responses
from payment.core.problems import FieldError, NotFound, ValidationProblem
from payment.delivery import store as delivery_store
from payment.delivery.models import Delivery
from payment.delivery.status import DeliveryStatus
from payment.deps import Principal, StateDep, client_ip
from payment.onramp import quotes, service
from payment.onramp.schemas import (
    CreateSessionRequest,
    DeliveryOut,
    QuoteFeesOut,
    QuoteOut,
    SessionOut,
    SessionPage,
    TransactionDetailsOut,
)
from payment.onramp.status import SessionStatus
from payment.onramp.store import SessionRecord
from payment.security.throttle import enforce_wallet_limit

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/onramp", tags=["onramp"])

_MAX_KEY_LENGTH = 255

# Wallets: their own sessions only. Operators and admins: every session; they may also create sessions on
# behalf of any wallet (a dApp's backend calling server to server with an operator API key).
Caller = Annotated[Principal, Depends(require_roles(*ANY_ROLE))]


def delivery_out(delivery: Delivery) -> DeliveryOut:
    return DeliveryOut(
        mode=DeliveryMode(delivery.mode),
        status=DeliveryStatus(delivery.status),
        tx_hash=delivery.tx_hash,
        confirmations=delivery.confirmations,
        expected_amount=delivery.expected_amount,
        delivered_amount=delivery.delivered_amount,
        verified_at=delivery.verified_at,
        reason=delivery.reason,
    )


def to_out(row: SessionRecord, *, include_secret: bool, delivery: Delivery | None = None) -> SessionOut:
    return SessionOut(
        id=row.id,
        stripe_session_id=row.stripe_session_id,
        client_secret=row.client_secret if include_secret else None,
        status=SessionStatus(row.status),
        wallet_address=row.wallet_address,
        source_amount=row.source_amount,
        source_currency=row.source_currency,
        destination_currency=row.destination_currency,
        destination_network=row.destination_network,
        transaction_details=TransactionDetailsOut(
            transaction_id=row.transaction_id,
            destination_amount=row.destination_amount,
            network_fee_amount=row.network_fee_amount,
            transaction_fee_amount=row.transaction_fee_amount,
        ),
        quoted_destination_amount=row.quoted_destination_amount,
        livemode=row.livemode,
        created_at=row.created_at,
        updated_at=row.updated_at,
        delivery=delivery_out(delivery) if delivery is not None else None,
    )


def _check_idempotency_key(key: str | None) -> None:
    if key is None:
        return
    if not 1 <= len(key) <= _MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ValidationProblem(
            [FieldError("header.Idempotency-Key", f"must be 1 to {_MAX_KEY_LENGTH} printable ASCII characters")]
        )


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionOut,
    response_model_by_alias=True,
    responses=problem_responses(400, 401, 403, 409, 422, 502, 503, 504),
    summary="Create an onramp session for a wallet",
)
async def create_session(
    body: CreateSessionRequest,
    request: Request,
    state: StateDep,
    principal: Caller,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    if principal.kind == "wallet" and not principal.owns(body.wallet_address):
        raise Forbidden("wallet-mismatch", "A wallet may only create sessions for its own address.")
    _check_idempotency_key(idempotency_key)
    # An API key creates for many buyers: each of them is held to the route's limit, as if it called itself.
    await enforce_wallet_limit(request, principal, body.wallet_address)
    outcome = await service.create_session(
        run_db=state.run_db,
        factory=state.factory,
        gateway=state.gateway,
        settings=state.settings,
        request=body,
        idempotency_key=idempotency_key,
        scope=principal.idempotency_scope,
        customer_ip_address=client_ip(request, state.settings),
        telemetry=state.telemetry,
    )
    headers = {"Location": f"{router.prefix}/sessions/{outcome.session.id}"}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    # The creator is the one caller entitled to the client secret (a replay proves it by the same key).
    out = to_out(outcome.session, include_secret=True)
    # Serialised here, once: returning the model would have FastAPI validate and serialise it a second time.
    return Response(out.model_dump_json(by_alias=True), status_code=201, headers=headers, media_type="application/json")


@router.get(
    "/quotes",
    response_model=QuoteOut,
    response_model_by_alias=True,
    responses=problem_responses(401, 403, 422, 502, 503, 504),
    summary="Estimate what a fiat amount buys, before Stripe's widget (Stripe's onramp quote)",
)
async def get_quote(
    state: StateDep,
    principal: Caller,
    source_amount: Annotated[str, Query(alias="sourceAmount", max_length=32, description='e.g. "100.00"')],
    source_currency: Annotated[str, Query(alias="sourceCurrency", max_length=8)] = "usd",
    destination_currency: Annotated[str, Query(alias="destinationCurrency", max_length=16)] = "musd",
    destination_network: Annotated[str, Query(alias="destinationNetwork", max_length=32)] = "mezo",
) -> QuoteOut:
    del principal  # any signed-in caller, as for creating a session
    request = quotes.quote_request(
        state.settings,
        source_amount=source_amount,
        source_currency=source_currency,
        destination_currency=destination_currency,
        destination_network=destination_network,
    )
    quote = await quotes.get_quote(gateway=state.gateway, request=request)
    return QuoteOut(
        stripe_quote_id=quote.stripe_quote_id,
        source_amount=quote.source_amount,
        source_currency=quote.source_currency,
        source_total_amount=quote.source_total_amount,
        destination_amount=quote.destination_amount,
        destination_currency=quote.destination_currency,
        destination_network=quote.destination_network,
        fees=QuoteFeesOut(network_fee_amount=quote.network_fee, transaction_fee_amount=quote.transaction_fee),
        rate_fetched_at=quote.rate_fetched_at,
        livemode=quote.livemode,
    )


def _visible_secret(principal: Principal, row: SessionRecord) -> bool:
    return principal.may_see_client_secret(row.wallet_address)


@router.get(
    "/sessions/{session_id}",
    response_model=SessionOut,
    response_model_by_alias=True,
    responses=problem_responses(401, 403, 404),
    summary="Get one onramp session",
)
async def get_session(
    session_id: Annotated[str, Path(max_length=64)], state: StateDep, principal: Caller
) -> SessionOut:
    row = await state.run_db(service.get_session, factory=state.factory, session_id=session_id)
    if principal.kind == "wallet" and not principal.owns(row.wallet_address):
        # 404, not 403: another wallet's session id must not be confirmed to exist.
        raise NotFound(f"No onramp session with id {session_id!r}.")
    deliveries = await state.run_db(delivery_store.deliveries_for, factory=state.factory, session_ids=[row.id])
    return to_out(row, include_secret=_visible_secret(principal, row), delivery=deliveries.get(row.id))


@router.get(
    "/sessions",
    response_model=SessionPage,
    response_model_by_alias=True,
    responses=problem_responses(401, 403, 422),
    summary="List onramp sessions, newest first (a wallet sees its own only)",
)
async def list_sessions(
    state: StateDep,
    principal: Caller,
    wallet_address: Annotated[str | None, Query(alias="walletAddress", max_length=64)] = None,
    session_status: Annotated[SessionStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> SessionPage:
    page = await state.run_db(
        service.list_sessions,
        factory=state.factory,
        wallet_address=wallet_address,
        status=session_status,
        limit=limit,
        cursor=cursor,
        owner=principal.subject if principal.kind == "wallet" else None,
    )
    deliveries = await state.run_db(
        delivery_store.deliveries_for, factory=state.factory, session_ids=[row.id for row in page.sessions]
    )
    return SessionPage(
        data=[
            to_out(row, include_secret=_visible_secret(principal, row), delivery=deliveries.get(row.id))
            for row in page.sessions
        ],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )
