"""The ledger check against the three real ledgers: the Stripe emulator (its session objects, read through the
SDK as reconciliation reads them), the database (both backends) and anvil (real MUSD transfers from the treasury).

Every kind the issue names is injected (a fee mismatch, a wrong recipient, a short amount, a missing transfer,
a treasury transfer with no session), found once, kept while it lasts, resolved when fixed; an operator's
explanation closes an outflow for good; fixing a delivery by sending again is caught as a double send."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from payment.core.db import run_db_on
from payment.delivery.models import Delivery, DeliveryTransaction
from payment.ledgers.findings import Kind
from payment.ledgers.models import LedgerDiscrepancy
from payment.ledgers.service import LedgerContext, LedgerReport, acknowledge, check_ledgers
from payment.onramp.models import OnrampSession, SessionStatusChange
from payment.reconcile.stripe import ReconcileStripe
from tests.payment.conftest import seed_session
from tests.payment.delivery.conftest import DeliveryRig, new_wallet, units
from tests.support.services import ROOT, musdpay_command
from tests.support.stack import API_KEY, Emulator, running_emulator

# The delivery rig's fixtures (anvil, database, provider pool), shared with tests/payment/delivery.
from tests.payment.delivery.conftest import chain_params, delivery_settings, rig  # noqa: F401  isort: skip

pytestmark = pytest.mark.integration


@dataclass
class Ledgers:
    rig: DeliveryRig
    emulator: Emulator
    context: LedgerContext

    def check(self) -> LedgerReport:
        now = self.rig.clock()
        return self.rig.run(check_ledgers(self.context, since=now - timedelta(hours=1), until=now))

    def purchase(
        self, amount: str, *, sent: str | None = None, to: str | None = None, fee: str | None = None
    ) -> tuple[OnrampSession, str | None]:
        """A purchase fulfilled at Stripe, recorded as the webhook path records it, and paid from the treasury
        (`sent` MUSD to `to`, by default the whole destination amount to the buyer; "none": nothing sent)."""
        wallet = new_wallet()
        created = self.emulator.sdk().raw_request(
            "post",
            "/v1/crypto/onramp_sessions",
            **{"wallet_addresses[ethereum]": wallet, "source_amount": amount, "source_currency": "usd",
               "destination_currency": "usdc", "destination_network": "ethereum"},
        ).data  # fmt: skip
        stripe = self.emulator.advance(created["id"], "fulfillment_complete")
        details = stripe["transaction_details"]
        fees = details["fees"]
        now = self.rig.clock()
        row = seed_session(
            self.rig.factory,
            status="fulfillment_complete",
            stripe_session_id=stripe["id"],
            wallet_address=wallet,
            source_amount=Decimal(details["source_amount"]),
            destination_amount=Decimal(details["destination_amount"]),
            network_fee_amount=Decimal(fees["network_fee_amount"]),
            transaction_fee_amount=Decimal(fee or fees["transaction_fee_amount"]),
        )
        tx_hash = None
        if sent != "none":
            value = units(sent or details["destination_amount"])
            tx_hash = str(self.rig.chain.transfer_musd(to or wallet, value)).lower()
        with self.rig.factory.begin() as db:
            reached = {"from_status": "fulfillment_processing", "to_status": "fulfillment_complete"}
            db.add(SessionStatusChange(session_id=row.id, source="webhook", occurred_at=now, **reached))
            recorded = tx_hash or "0x" + uuid.uuid4().hex * 2
            db.add(self._delivery(row, recorded, now))
            if tx_hash is not None:
                db.add(self._attempt(row.id, tx_hash, now))
        return row, tx_hash

    def _delivery(self, row: OnrampSession, tx_hash: str, now: Any) -> Delivery:
        return Delivery(
            session_id=row.id, mode="treasury", status="verified", wallet_address=row.wallet_address,
            expected_amount=row.destination_amount, tx_hash=tx_hash, confirmations=1, checks=1,
            next_check_at=now, deadline_at=now, created_at=now, updated_at=now,
        )  # fmt: skip

    def _attempt(self, session_id: str, tx_hash: str, now: Any) -> DeliveryTransaction:
        return DeliveryTransaction(tx_hash=tx_hash, session_id=session_id, nonce=0, gas_price=Decimal(1),
                                   raw_tx="0x", created_at=now, broadcast_at=now)  # fmt: skip

    def resend(self, row: OnrampSession) -> str:
        """Pay a purchase again, correctly, and record that transfer as its delivery."""
        tx_hash = str(self.rig.chain.transfer_musd(row.wallet_address, units(str(row.destination_amount)))).lower()
        with self.rig.factory.begin() as db:
            db.execute(update(Delivery).where(Delivery.session_id == row.id).values(tx_hash=tx_hash))
            db.add(self._attempt(row.id, tx_hash, self.rig.clock()))
        return tx_hash

    def open_rows(self) -> dict[tuple[str, str | None], LedgerDiscrepancy]:
        with self.rig.factory() as db:
            rows = db.scalars(select(LedgerDiscrepancy).where(LedgerDiscrepancy.resolved_at.is_(None))).all()
            db.expunge_all()
        return {(row.kind, row.session_id or row.tx_hash): row for row in rows}

    def gauge(self, name: str, **labels: str) -> float | None:
        return self.rig.telemetry.metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def ledgers(rig: DeliveryRig, tmp_path: Path) -> Iterator[Ledgers]:  # noqa: F811 - the imported fixture
    with running_emulator(tmp_path, webhook_port=None) as emulator:
        settings = rig.settings.model_copy(
            update={
                "stripe_secret_key": SecretStr(API_KEY),
                "stripe_api_base": emulator.url,
                "stripe_max_network_retries": 0,
            }
        )
        stripe = ReconcileStripe.from_settings(settings, rig.telemetry)
        assert stripe is not None
        context = LedgerContext(
            factory=rig.factory,
            run_db=run_db_on(rig.engine),
            fetch_stripe_session=stripe.retrieve_session,
            chain=rig.client,
            musd_address=rig.chain.musd_address,
            treasury_addresses=[rig.chain.treasury_address],
            metrics=rig.telemetry.metrics,
            clock=rig.clock,
            log_chunk_blocks=3,  # several eth_getLogs ranges even on a short chain
        )
        yield Ledgers(rig, emulator, context)


def test_every_injected_disagreement_is_found_once_and_resolves_when_fixed(ledgers: Ledgers) -> None:
    agreeing, _ = ledgers.purchase("100.00")
    fee, _ = ledgers.purchase("50.00", fee="9.99")
    elsewhere = new_wallet()
    wrong, _ = ledgers.purchase("40.00", to=elsewhere)
    short, _ = ledgers.purchase("30.00", sent="1.5")
    missing, _ = ledgers.purchase("20.00", sent="none")
    outflow = str(ledgers.rig.chain.transfer_musd(new_wallet(), units("7.25"))).lower()

    first = ledgers.check()
    assert first.sessions_checked == 5
    assert first.agreeing == 1
    assert first.opened == 5
    expected = {
        (Kind.stripe_fee_mismatch.value, fee.id),
        (Kind.wrong_recipient.value, wrong.id),
        (Kind.short_amount.value, short.id),
        (Kind.missing_transfer.value, missing.id),
        (Kind.unexplained_outflow.value, outflow),
    }
    rows = ledgers.open_rows()
    assert set(rows) == expected
    assert agreeing.id not in {subject for _, subject in rows}
    assert elsewhere.lower() in rows[(Kind.wrong_recipient.value, wrong.id)].detail.lower()
    short_row = rows[(Kind.short_amount.value, short.id)]
    assert (short_row.expected_amount, short_row.actual_amount) == (short.destination_amount, Decimal("1.5"))
    assert rows[(Kind.unexplained_outflow.value, outflow)].actual_amount == Decimal("7.25")
    # The gauges: one open per injected kind, 0 for the others; the amount at stake per kind.
    for kind in Kind:
        count = 1.0 if any(k == kind.value for k, _ in expected) else 0.0
        assert ledgers.gauge("musdpay_ledger_discrepancies", kind=kind.value) == count, kind
    assert ledgers.gauge("musdpay_ledger_discrepancy_amount", kind="unexplained_outflow", currency="musd") == 7.25
    stake = float((short.destination_amount or Decimal(0)) - Decimal("1.5"))
    assert ledgers.gauge("musdpay_ledger_discrepancy_amount", kind="short_amount", currency="musd") == stake

    # Found once: a second check changes nothing but when each was last seen.
    ledgers.rig.clock.advance(60)
    second = ledgers.check()
    assert (second.opened, second.resolved) == (0, 0)
    again = ledgers.open_rows()
    assert {key: row.id for key, row in again.items()} == {key: row.id for key, row in rows.items()}
    assert all(row.last_seen_at > rows[key].last_seen_at for key, row in again.items())

    # Fixed: the fee recorded right, the missing delivery sent, the wrong one sent again to the buyer (now a
    # double send: two treasury transfers paid that purchase), the outflow explained by an operator.
    fixed_fee = Decimal(
        ledgers.context.fetch_stripe_session(fee.stripe_session_id)["transaction_details"]["fees"][
            "transaction_fee_amount"
        ]
    )
    with ledgers.rig.factory.begin() as db:
        db.execute(update(OnrampSession).where(OnrampSession.id == fee.id).values(transaction_fee_amount=fixed_fee))
    ledgers.resend(missing)
    ledgers.resend(wrong)
    outflow_row = rows[(Kind.unexplained_outflow.value, outflow)]
    assert acknowledge(ledgers.rig.factory, outflow_row.id, note="treasury rebalancing", now=ledgers.rig.clock())

    ledgers.rig.clock.advance(60)
    third = ledgers.check()
    assert set(ledgers.open_rows()) == {(Kind.short_amount.value, short.id), (Kind.double_send.value, wrong.id)}
    assert third.resolved == 3  # fee, missing, wrong recipient (the outflow was closed by the operator)
    assert third.opened == 1  # the double send
    assert ledgers.gauge("musdpay_ledger_discrepancies", kind="unexplained_outflow") == 0.0
    assert ledgers.gauge("musdpay_ledger_discrepancies", kind="double_send") == 1.0
    with ledgers.rig.factory() as db:
        closed = db.get(LedgerDiscrepancy, outflow_row.id)
        assert closed is not None
        assert closed.resolution == "treasury rebalancing"
    # The operator's explanation holds: the same outflow is not reopened.
    fourth = ledgers.check()
    assert fourth.opened == 0
    assert (Kind.unexplained_outflow.value, outflow) not in ledgers.open_rows()


def test_the_command_reports_the_check_and_exits_3_while_a_discrepancy_is_open(ledgers: Ledgers) -> None:
    ledgers.purchase("60.00")
    outflow = str(ledgers.rig.chain.transfer_musd(new_wallet(), units("3"))).lower()
    settings = ledgers.rig.settings
    env = {
        "MUSDPAY_ENVIRONMENT": "test",
        "MUSDPAY_DATABASE_URL": settings.database_url,
        "MUSDPAY_STRIPE_SECRET_KEY": API_KEY,
        "MUSDPAY_STRIPE_API_BASE": ledgers.emulator.url,
        "MUSDPAY_CHAIN_ID": str(settings.chain_id),
        "MUSDPAY_RPC_PROVIDERS": f"local={ledgers.rig.chain.rpc_url}",
        "MUSDPAY_MUSD_ADDRESS": ledgers.rig.chain.musd_address,
        "MUSDPAY_DELIVERY_MODE": "treasury",
        "MUSDPAY_TREASURY_KEY": ledgers.rig.chain.treasury_key,
        "MUSDPAY_LOG_LEVEL": "WARNING",
    }

    def reconcile(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            musdpay_command("reconcile", *args),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=False,
        )

    shown = reconcile("--report")
    assert shown.returncode == 3, shown.stdout + shown.stderr
    assert re.search(r"sessions\s+1 checked, 1 agreeing", shown.stdout), shown.stdout
    assert re.search(r"unexplained_outflow\s+1\n", shown.stdout), shown.stdout
    assert re.search(r"short_amount\s+0\n", shown.stdout), shown.stdout
    assert outflow in shown.stdout
    [row] = ledgers.open_rows().values()
    assert acknowledge(ledgers.rig.factory, row.id, note="moved to cold storage", now=ledgers.rig.clock())
    settled = reconcile("--ledgers")
    assert settled.returncode == 0, settled.stdout + settled.stderr
    assert "1 purchases checked, 1 agreeing, 0 disagreements (0 new, 0 resolved), 0 open" in settled.stdout
