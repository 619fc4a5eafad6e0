"""The committed artifacts are what contracts/compile.js builds from contracts/*.sol today."""

from __future__ import annotations

import subprocess

import pytest

from sandbox.chain.artifact import MUSD_ARTIFACT, musd_artifact
from tests.sandbox.chain.support import require_node
from tests.support.services import ROOT

pytestmark = pytest.mark.integration


def test_the_committed_artifact_equals_a_fresh_compilation() -> None:
    node = require_node()
    fresh = subprocess.run(
        [node, "contracts/compile.js", "--stdout"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert fresh.returncode == 0, fresh.stderr
    assert "contracts/MUSD.sol" not in fresh.stderr, f"the compiler warned:\n{fresh.stderr}"  # node's own notes pass
    assert fresh.stdout == MUSD_ARTIFACT.read_text(), "stale artifact: run `node contracts/compile.js` and commit it"


SMART_ACCOUNT_ARTIFACT = ROOT / "contracts" / "artifacts" / "SmartAccount.json"


def test_the_committed_smart_account_artifact_equals_a_fresh_compilation() -> None:
    node = require_node()
    fresh = subprocess.run(
        [node, "contracts/compile.js", "--stdout", "SmartAccount"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert fresh.returncode == 0, fresh.stderr
    assert "contracts/SmartAccount.sol" not in fresh.stderr, f"the compiler warned:\n{fresh.stderr}"
    assert fresh.stdout == SMART_ACCOUNT_ARTIFACT.read_text(), "stale artifact: run `node contracts/compile.js`"


def test_the_smart_account_has_the_eip1271_interface() -> None:
    artifact = musd_artifact(SMART_ACCOUNT_ARTIFACT)  # the loader reads any artifact of compile.js
    functions = {item["name"]: item for item in artifact.abi if item["type"] == "function"}
    assert set(functions) == {"isValidSignature", "owner"}
    signature = functions["isValidSignature"]
    assert [i["type"] for i in signature["inputs"]] == ["bytes32", "bytes"]
    assert [o["type"] for o in signature["outputs"]] == ["bytes4"]


def test_the_artifact_has_the_erc20_and_permit_interface() -> None:
    artifact = musd_artifact()
    functions = {item["name"] for item in artifact.abi if item["type"] == "function"}
    assert functions >= {
        "name", "symbol", "decimals", "totalSupply", "balanceOf", "transfer", "transferFrom", "approve",
        "allowance", "permit", "nonces", "DOMAIN_SEPARATOR", "mint", "minter",
    }  # fmt: skip
    events = {item["name"] for item in artifact.abi if item["type"] == "event"}
    assert events == {"Transfer", "Approval"}
    assert artifact.bytecode.startswith("0x60")
    assert len(artifact.bytecode) > len(artifact.deployed_bytecode)
