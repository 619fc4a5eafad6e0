"""The monitor's YAML config: substitution of secrets, validation, and the example file at the repo root."""

from __future__ import annotations

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
