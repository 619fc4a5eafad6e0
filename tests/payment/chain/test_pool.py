"""The provider pool against a real anvil behind two real fault proxies ("spectrum" first, "public" second)."""

from __future__ import annotations

import logging
import time

import pytest

from payment.chain.errors import RpcError, RpcErrorKind
from payment.chain.pool import CHAIN_RECHECK_EVERY, ProviderPool, ProviderState
from tests.payment.chain.conftest import PUBLIC_KEY, SPECTRUM_KEY, Rig

pytestmark = pytest.mark.integration


def states(rig: Rig, pool: ProviderPool) -> dict[str, ProviderState]:
    return {health.name: health.state for health in pool.snapshot()}


def test_spectrum_is_selected_first_and_takes_every_call(rig: Rig) -> None:
    pool = rig.pool()
    rig.run(pool.poll_once())
    assert pool.selected == "spectrum"
    assert states(rig, pool) == {"spectrum": ProviderState.healthy, "public": ProviderState.healthy}
    rig.reset_stats()

    for _ in range(5):
        assert int(rig.run(pool.request("eth_blockNumber")), 16) == rig.chain.block_number()

    assert rig.calls(rig.spectrum, "eth_blockNumber") == 5
    assert rig.calls(rig.public) == 0


def test_first_call_before_any_poll_verifies_the_chain_id_then_uses_spectrum(rig: Rig) -> None:
    pool = rig.pool()
    assert rig.run(pool.request("eth_chainId")) == hex(rig.chain.chain_id)
    assert rig.calls(rig.spectrum, "eth_chainId") == 2  # the verification, then the call itself
    assert rig.calls(rig.public, "eth_chainId") == 0
    assert [h.chain_verified for h in pool.snapshot()] == [True, False]


@pytest.mark.parametrize(
    ("faults", "kind"),
    [
        ({"http_error_rate": 1.0, "http_error_status": 503}, RpcErrorKind.http_5xx),
        ({"rate_limit_rate": 1.0}, RpcErrorKind.http_429),
        ({"timeout_rate": 1.0, "timeout_ms": 10_000}, RpcErrorKind.timeout),
        ({"drop_rate": 1.0}, RpcErrorKind.connect),
        ({"down": True}, RpcErrorKind.connect),
        (
            {"rpc_error_rate": 1.0, "rpc_error_code": -32005, "rpc_error_message": "rate limit"},
            RpcErrorKind.jsonrpc_error,
        ),
    ],
    ids=["5xx", "429", "timeout", "dropped", "down", "jsonrpc-rate-limit"],
)
def test_a_failing_spectrum_fails_over_to_public_then_is_demoted(
    rig: Rig, faults: dict[str, object], kind: RpcErrorKind
) -> None:
    pool = rig.pool(rpc_timeout_seconds=0.3)
    rig.run(pool.poll_once())
    rig.spectrum.set_faults(**faults)
    rig.reset_stats()

    # Two failed calls (rpc_unreachable_after=2): each answered by public after spectrum's failure.
    for _ in range(2):
        assert int(rig.run(pool.request("eth_blockNumber")), 16) >= 1
    assert rig.calls(rig.public, "eth_blockNumber") == 2
    assert rig.metric("musdpay_rpc_errors_total", provider="spectrum", kind=kind.value) == 2
    assert rig.metric("musdpay_rpc_failovers_total", from_provider="spectrum", to_provider="public") == 2
    assert states(rig, pool)["spectrum"] is ProviderState.unreachable
    assert pool.selected == "public"

    # Demoted: calls no longer try spectrum first.
    spectrum_before = rig.spectrum.stats()["requests"]
    rig.run(pool.request("eth_blockNumber"))
    assert rig.spectrum.stats()["requests"] == spectrum_before
    assert rig.metric("musdpay_rpc_failovers_total", from_provider="spectrum", to_provider="public") == 2


def test_the_per_call_timeout_is_honoured(rig: Rig) -> None:
    pool = rig.pool(rpc_timeout_seconds=0.4)
    rig.run(pool.poll_once())
    rig.spectrum.set_faults(timeout_rate=1.0, timeout_ms=30_000)

    started = time.monotonic()
    rig.run(pool.request("eth_blockNumber"))
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 2.0, elapsed  # spectrum's 0.4 s, then public's answer

    started = time.monotonic()
    with pytest.raises(RpcError) as caught:
        rig.run(pool.probe("spectrum", "eth_blockNumber"))
    assert caught.value.kind is RpcErrorKind.timeout
    assert 0.4 <= time.monotonic() - started < 2.0

    started = time.monotonic()
    rig.public.set_faults(timeout_rate=1.0, timeout_ms=30_000)
    with pytest.raises(RpcError):
        rig.run(pool.request("eth_blockNumber", timeout=0.1))  # a shorter bound for this call
    assert time.monotonic() - started < 1.0  # at most 3 attempts of 0.1 s, plus a short backoff


def test_a_stalled_head_goes_out_of_sync_beyond_k_blocks(rig: Rig) -> None:
    pool = rig.pool()  # rpc_out_of_sync_blocks=3
    rig.run(pool.poll_once())
    rig.spectrum.set_faults(stall=True)

    rig.chain.mine(3)
    rig.run(pool.poll_once())
    spectrum = pool.snapshot()[0]
    assert spectrum.lag_blocks == 3
    assert spectrum.state is ProviderState.healthy  # K blocks behind is still in sync
    assert pool.selected == "spectrum"

    rig.chain.mine(1)
    rig.run(pool.poll_once())
    spectrum = pool.snapshot()[0]
    assert spectrum.lag_blocks == 4
    assert spectrum.state is ProviderState.out_of_sync
    assert pool.selected == "public"
    assert rig.metric("musdpay_rpc_provider_head_lag_blocks", provider="spectrum") == 4
    assert rig.metric("musdpay_rpc_provider_state", provider="spectrum", state="out_of_sync") == 1

    rig.reset_stats()
    assert int(rig.run(pool.request("eth_blockNumber")), 16) == rig.chain.block_number()
    assert rig.calls(rig.spectrum) == 0


def test_spectrum_comes_back_only_after_healing_and_recover_after_good_polls(rig: Rig) -> None:
    pool = rig.pool()  # rpc_unreachable_after=2, rpc_recover_after=2
    rig.run(pool.poll_once())
    rig.spectrum.set_faults(http_error_rate=1.0)
    for _ in range(2):
        rig.run(pool.poll_once())
    assert states(rig, pool)["spectrum"] is ProviderState.unreachable
    assert pool.selected == "public"

    # Flapping: one good poll, then a failure again. Traffic never bounces back.
    rig.spectrum.heal()
    rig.run(pool.poll_once())
    assert pool.selected == "public"
    assert pool.snapshot()[0].consecutive_successes == 1
    rig.spectrum.set_faults(http_error_rate=1.0)
    rig.run(pool.poll_once())
    assert pool.snapshot()[0].consecutive_successes == 0
    assert pool.selected == "public"

    # Healed for good: back after exactly recover_after good polls.
    rig.spectrum.heal()
    rig.run(pool.poll_once())
    assert pool.selected == "public"
    rig.run(pool.poll_once())
    assert states(rig, pool)["spectrum"] is ProviderState.healthy
    assert pool.selected == "spectrum"
    assert rig.metric("musdpay_rpc_provider_selected", provider="spectrum") == 1
    assert rig.metric("musdpay_rpc_provider_selected", provider="public") == 0

    rig.reset_stats()
    rig.run(pool.request("eth_blockNumber"))
    assert rig.calls(rig.spectrum, "eth_blockNumber") == 1
    assert rig.calls(rig.public) == 0


def test_a_provider_on_the_wrong_chain_is_never_called(rig: Rig) -> None:
    rig.spectrum.set_faults(chain_id=1)
    pool = rig.pool()
    for _ in range(3):
        rig.run(pool.request("eth_blockNumber"))
    rig.run(pool.poll_once())
    rig.run(pool.request("eth_getBalance", [rig.chain.treasury_address, "latest"]))

    spectrum = pool.snapshot()[0]
    assert spectrum.state is ProviderState.wrong_chain
    assert spectrum.chain_id == 1
    assert not spectrum.chain_verified
    assert pool.selected == "public"
    assert rig.calls(rig.spectrum) == 0  # eth_chainId only
    assert rig.calls(rig.spectrum, "eth_chainId") >= 1
    assert rig.metric("musdpay_rpc_errors_total", provider="spectrum", kind="chain_id_mismatch") >= 1
    # Its probe still works (the monitor reports it), and the pool still never calls it.
    assert rig.run(pool.probe("spectrum", "eth_chainId")) == "0x1"


def test_a_wrong_chain_id_found_at_a_later_recheck_excludes_the_provider(rig: Rig) -> None:
    pool = rig.pool()
    rig.run(pool.poll_once())
    rig.spectrum.set_faults(chain_id=31612)  # say, a mainnet endpoint configured for testnet
    for _ in range(CHAIN_RECHECK_EVERY):
        rig.run(pool.poll_once())
    assert states(rig, pool)["spectrum"] is ProviderState.wrong_chain
    assert pool.selected == "public"


def test_the_only_provider_on_the_wrong_chain_is_refused_not_used(rig: Rig) -> None:
    rig.spectrum.set_faults(chain_id=31612)
    pool = rig.pool([("spectrum", rig.spectrum_url())])
    for _ in range(2):
        with pytest.raises(RpcError) as caught:
            rig.run(pool.request("eth_blockNumber"))
        assert caught.value.kind is RpcErrorKind.chain_id_mismatch
        assert not caught.value.retryable
    assert "31612" in str(caught.value)
    assert rig.calls(rig.spectrum) == 0
    assert pool.selected is None


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("eth_getBalance", ["0x1234", "latest"], -32602),  # invalid params
        ("eth_noSuchMethod", [], -32601),  # method not found
    ],
)
def test_an_answer_about_the_request_is_raised_not_retried(
    rig: Rig, method: str, params: list[object], code: int
) -> None:
    pool = rig.pool()
    rig.run(pool.poll_once())
    rig.reset_stats()
    with pytest.raises(RpcError) as caught:
        rig.run(pool.request(method, params))
    assert caught.value.kind is RpcErrorKind.jsonrpc_error
    assert caught.value.code == code
    assert not caught.value.retryable
    assert caught.value.provider == "spectrum"
    assert rig.calls(rig.spectrum, method) == 1
    assert rig.calls(rig.public) == 0
    assert states(rig, pool)["spectrum"] is ProviderState.healthy
    assert pool.snapshot()[0].consecutive_failures == 0


def test_a_reverted_eth_call_is_raised_with_its_revert_data(rig: Rig) -> None:
    pool = rig.pool()
    rig.run(pool.poll_once())
    rig.reset_stats()
    # transfer(deployer, 2**256-1) from an address holding no MUSD
    data = "0xa9059cbb" + rig.chain.deployer_address[2:].lower().rjust(64, "0") + "f" * 64
    call = {"from": "0x000000000000000000000000000000000000dEaD", "to": rig.chain.musd_address, "data": data}
    with pytest.raises(RpcError) as caught:
        rig.run(pool.request("eth_call", [call, "latest"]))
    assert "revert" in (caught.value.rpc_message or "")
    assert isinstance(caught.value.data, str)
    assert caught.value.data.startswith("0x")
    assert not caught.value.retryable
    assert rig.calls(rig.spectrum, "eth_call") == 1
    assert rig.calls(rig.public, "eth_call") == 0


def test_every_provider_down_is_a_clear_error(rig: Rig) -> None:
    pool = rig.pool()
    rig.run(pool.poll_once())
    rig.spectrum.set_faults(down=True)
    rig.public.set_faults(http_error_rate=1.0, http_error_status=502)

    with pytest.raises(RpcError) as caught:
        rig.run(pool.request("eth_blockNumber"))
    error = caught.value
    assert error.kind is RpcErrorKind.no_provider
    assert error.retryable
    # Three attempts over two providers: spectrum, public, then spectrum again after a short backoff.
    assert error.attempts == (
        ("spectrum", RpcErrorKind.connect),
        ("public", RpcErrorKind.http_5xx),
        ("spectrum", RpcErrorKind.connect),
    )
    assert "no RPC provider answered eth_blockNumber" in str(error)
    for secret in (SPECTRUM_KEY, PUBLIC_KEY):
        assert secret not in str(error)
        assert secret not in repr(error.__cause__)
    assert rig.metric("musdpay_rpc_errors_total", provider="none", kind="no_provider") == 1

    # Both demoted after two failed calls each: still tried (best score first) rather than refused.
    rig.run(pool.poll_once())
    assert set(states(rig, pool).values()) == {ProviderState.unreachable}
    assert pool.selected is not None
    rig.spectrum.heal()
    assert int(rig.run(pool.request("eth_blockNumber")), 16) >= 1


def test_spans_describe_each_attempt_without_the_url(rig: Rig) -> None:
    pool = rig.pool()
    rig.run(pool.poll_once())
    rig.spectrum.set_faults(http_error_rate=1.0)
    rig.spans.clear()

    rig.run(pool.request("eth_blockNumber"))

    spans = rig.finished_spans()
    assert [span.name for span in spans] == ["jsonrpc eth_blockNumber", "jsonrpc eth_blockNumber"]
    failed, answered = spans
    assert failed.attributes is not None
    assert answered.attributes is not None
    assert dict(failed.attributes) == {
        "rpc.system": "jsonrpc",
        "rpc.method": "eth_blockNumber",
        "rpc.jsonrpc.version": "2.0",
        "server.address": "127.0.0.1",
        "server.port": int(rig.spectrum.url.rsplit(":", 1)[1]),
        "musdpay.rpc.provider": "spectrum",
        "musdpay.rpc.attempt": 1,
        "error.type": "http_5xx",
    }
    assert failed.status.status_code.name == "ERROR"
    assert answered.attributes["musdpay.rpc.provider"] == "public"
    assert answered.attributes["musdpay.rpc.attempt"] == 2
    assert answered.status.status_code.name == "UNSET"
    assert failed.kind.name == "CLIENT"

    rig.run(pool.poll_once())
    every = rig.finished_spans()
    assert any(span.name == "rpc.pool.poll" for span in every)
    for span in every:
        text = repr(span.to_json())
        assert SPECTRUM_KEY not in text
        assert PUBLIC_KEY not in text
        assert "/mezo/testnet" not in text


def test_metrics_after_a_failover(rig: Rig) -> None:
    pool = rig.pool()
    rig.run(pool.poll_once())
    rig.spectrum.set_faults(http_error_rate=1.0)
    for _ in range(3):
        rig.run(pool.request("eth_getBalance", [rig.chain.treasury_address, "latest"]))
    with pytest.raises(RpcError):
        rig.run(pool.request("debug_whatever", []))

    m = rig.metric
    assert m("musdpay_rpc_failovers_total", from_provider="spectrum", to_provider="public") == 2
    assert m("musdpay_rpc_errors_total", provider="spectrum", kind="http_5xx") == 2
    assert (
        m("musdpay_rpc_request_duration_seconds_count", provider="spectrum", method="eth_getBalance", outcome="failure")
        == 2
    )
    assert (
        m("musdpay_rpc_request_duration_seconds_count", provider="public", method="eth_getBalance", outcome="success")
        == 3
    )
    # An unknown method is labelled "other"; the node's error answer is an rpc_error, not a failure.
    assert m("musdpay_rpc_request_duration_seconds_count", provider="public", method="other", outcome="rpc_error") == 1
    assert m("musdpay_rpc_provider_state", provider="spectrum", state="unreachable") == 1
    assert m("musdpay_rpc_provider_state", provider="spectrum", state="healthy") == 0
    assert m("musdpay_rpc_provider_state", provider="public", state="healthy") == 1
    assert m("musdpay_rpc_provider_selected", provider="public") == 1
    assert m("musdpay_rpc_provider_head_lag_blocks", provider="public") == 0
    for metric in rig.registry.collect():
        for sample in metric.samples:
            for value in sample.labels.values():
                assert "://" not in value
                assert SPECTRUM_KEY not in value


def test_logs_name_providers_by_name_and_redacted_url_only(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # web3 logs endpoint URIs at DEBUG: the pool's filter redacts them
    pool = rig.pool()
    rig.run(pool.poll_once())
    rig.spectrum.set_faults(down=True)
    for _ in range(2):
        rig.run(pool.request("eth_blockNumber"))
    rig.run(pool.aclose())

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "spectrum" in text
    assert "is now unreachable" in text
    assert "/***/mezo/testnet/" in text
    assert SPECTRUM_KEY not in text
    assert PUBLIC_KEY not in text


def test_the_background_poller_finds_a_failure_and_a_recovery(rig: Rig) -> None:
    pool = rig.pool(rpc_poll_interval_seconds=0.02)
    rig.run(pool.start())
    rig.eventually(lambda: pool.selected == "spectrum" and pool.snapshot()[0].state is ProviderState.healthy)

    rig.spectrum.set_faults(http_error_rate=1.0)
    rig.eventually(lambda: pool.selected == "public")
    rig.spectrum.heal()
    rig.eventually(lambda: pool.selected == "spectrum")
    assert pool.snapshot()[0].latency_ms is not None


def test_probe_asks_one_provider_and_never_fails_over(rig: Rig) -> None:
    pool = rig.pool()
    rig.run(pool.poll_once())
    rig.spectrum.set_faults(http_error_rate=1.0)
    rig.reset_stats()
    with pytest.raises(RpcError) as caught:
        rig.run(pool.probe("spectrum", "eth_blockNumber"))
    assert caught.value.kind is RpcErrorKind.http_5xx
    assert caught.value.provider == "spectrum"
    assert rig.calls(rig.public) == 0
    assert int(rig.run(pool.probe("public", "eth_blockNumber")), 16) >= 1
    with pytest.raises(KeyError):
        rig.run(pool.probe("nobody", "eth_blockNumber"))


def test_a_closed_pool_refuses_calls(rig: Rig) -> None:
    pool = rig.pool()
    rig.run(pool.request("eth_blockNumber"))
    rig.run(pool.aclose())
    with pytest.raises(RuntimeError, match="closed"):
        rig.run(pool.request("eth_blockNumber"))
