"""The monitor's YAML config: substitution of secrets, validation, and the example file at the repo root."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config, substitute

ROOT = Path(__file__).resolve().parents[2]


def test_substitution_of_variables_defaults_files_and_dollars(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("sk_test_from_a_file\n")
    env = {"HOST": "db.internal", "EMPTY": ""}
    assert substitute("postgresql://${HOST}/x", env) == "postgresql://db.internal/x"
    assert substitute("${MISSING:-fallback}", env) == "fallback"
    assert substitute("${EMPTY:-fallback}", env) == "fallback"
    assert substitute("${EMPTY}", env) == ""
    assert substitute(f"${{file:{secret}}}", env) == "sk_test_from_a_file"
    assert substitute("cost: $$5", env) == "cost: $5"
    with pytest.raises(ConfigError, match=r"\$\{MISSING\} is referenced but not set"):
        substitute("${MISSING}", env)
    with pytest.raises(ConfigError, match="cannot read"):
        substitute(f"${{file:{tmp_path / 'absent'}}}", env)


def test_values_cannot_change_the_document_structure() -> None:
    config = load_config(
        text="settings:\n  database_url: ${URL}\n", environ={"URL": "sqlite:///x\nrpc: {enabled: false}"}
    )
    assert config.settings["database_url"] == "sqlite:///x\nrpc: {enabled: false}"
    assert config.rpc.enabled


def test_timing_defaults_follow_the_interval() -> None:
    config = load_config(text="rpc: {interval_seconds: 10}\n", environ={})
    assert config.rpc.jitter == 1.0
    assert config.rpc.timeout == 8.0
    assert config.rpc.call_timeout == 4.0
    assert config.rpc.misfire_grace == 10.0
    assert config.server.port == 9101


def test_errors_name_the_field_but_never_the_secret_value() -> None:
    with pytest.raises(ConfigError, match=r"rpc\.interval_seconds") as caught:
        load_config(text="rpc: {interval_seconds: -1, call_timeout_seconds: 1}\n", environ={})
    text = "settings:\n  rpc_providers: spectrum=https://x/SuperSecretKey123456789/mezo\n  chain_id: nope\n"
    with pytest.raises(ConfigError, match="chain_id") as caught:
        load_config(text=text, environ={}).payment_settings()
    assert "SuperSecretKey" not in str(caught.value)
    unknown = "settings: {rpc_providers: 'a=http://127.0.0.1:1'}\nrpc: {providers: {b: {sla_target_ratio: 0.9}}}\n"
    with pytest.raises(ConfigError, match="not configured: b"):
        load_config(text=unknown, environ={}).payment_settings()
    with pytest.raises(ConfigError, match="unknown_section"):
        load_config(text="unknown_section: {}\n", environ={})


def test_the_example_config_matches_the_local_stack() -> None:
    config = load_config(ROOT / "monitor.yml", environ={})
    settings = config.payment_settings()
    assert [p.name for p in settings.rpc_providers] == ["spectrum", "public"]
    assert settings.stripe_api_base == "http://127.0.0.1:12111"
    assert config.rpc.sla_target("spectrum") == 0.999
    assert config.rpc.quota("spectrum") is not None
    assert config.server.port == 9101
    plan = config.rpc.plan("spectrum")
    assert plan is not None
    assert (plan.name, plan.monthly_price_usd) == ("Spectrum Business", Decimal("169"))
    assert config.rpc.plan("public") is None  # best effort, no price


def test_a_provider_plan_is_optional_and_validated() -> None:
    assert (
        load_config(text="rpc: {providers: {spectrum: {sla_target_ratio: 0.999}}}\n", environ={}).rpc.plan("spectrum")
        is None
    )
    assert load_config(text="", environ={}).rpc.plan("spectrum") is None
    priced = load_config(text="rpc: {providers: {s: {plan: {name: Pro, monthly_price_usd: 169.99}}}}\n", environ={})
    plan = priced.rpc.plan("s")
    assert plan is not None
    assert plan.monthly_price_usd == Decimal("169.99")  # exactly, never a float's approximation
    invalid = {
        "{name: Pro}": "plan.monthly_price_usd",  # both fields required
        "{monthly_price_usd: 5}": "plan.name",
        "{name: '', monthly_price_usd: 5}": "plan.name",
        "{name: Pro, monthly_price_usd: -1}": "plan.monthly_price_usd",
        "{name: Pro, monthly_price_usd: 1.001}": "plan.monthly_price_usd",  # cents at most
        "{name: Pro, monthly_price_usd: .nan}": "plan.monthly_price_usd",
        "{name: Pro, monthly_price_usd: 5, currency: eur}": "plan.currency",  # unknown field
    }
    for plan_text, field in invalid.items():
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_config(text=f"rpc: {{providers: {{s: {{plan: {plan_text}}}}}}}\n", environ={})
