"""Smart-account sign-in (EIP-1271) against a contract deployed on the local chain (anvil), over real RPC."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from eth_abi.abi import encode
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from payment.api import create_app
from payment.auth.signatures import EIP1271_MAGIC, message_hash, web3_eth_call
from sandbox.chain.artifact import musd_artifact
from sandbox.chain.local import LocalChain, running_chain
from tests.payment.auth.conftest import assert_problem, auth_settings, new_nonce, sign, siwe_message
from tests.sandbox.chain.support import require_anvil
from tests.support.auth import bearer, wallet_account
from tests.support.services import ROOT, free_port

pytestmark = pytest.mark.integration

VERIFY = "/api/v1/auth/verify"


@pytest.fixture(scope="module")
def chain() -> Iterator[LocalChain]:
    require_anvil()
    with running_chain() as running:
        yield running


def deploy_smart_account(chain: LocalChain, owner: str) -> str:
    artifact = musd_artifact(ROOT / "contracts" / "artifacts" / "SmartAccount.json")
    data = artifact.bytecode + encode(["address"], [owner]).hex()
    tx_hash = chain.sender.send(chain.deployer_key, to=None, data=data, gas=500_000)
    receipt = chain.sender.wait(tx_hash)
    address = receipt["contractAddress"]
    assert address is not None
    return str(address)


@pytest.fixture(scope="module")
def owner() -> LocalAccount:
    return wallet_account(11)


@pytest.fixture(scope="module")
def smart_account(chain: LocalChain, owner: LocalAccount) -> str:
    return deploy_smart_account(chain, owner.address)


@pytest.fixture
def client(database_url: str, chain: LocalChain, factory: sessionmaker[Session]) -> Iterator[TestClient]:
    settings = auth_settings(database_url, rpc_providers=f"local={chain.rpc_url}")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_the_contract_answers_the_magic_value_for_its_owner(
    chain: LocalChain, owner: LocalAccount, smart_account: str
) -> None:
    eth_call = web3_eth_call(chain.rpc_url, timeout=5)
    message = "hello"

    def ask(signer: LocalAccount) -> bytes:
        signature = bytes.fromhex(sign(signer, message)[2:])
        data = EIP1271_MAGIC + encode(["bytes32", "bytes"], [message_hash(message), signature])
        return asyncio.run(eth_call(smart_account, data))  # the selector is the magic value itself

    assert ask(owner)[:4] == EIP1271_MAGIC
    assert ask(wallet_account(12))[:4] == bytes.fromhex("ffffffff")


def test_a_smart_account_signs_in_through_eip1271(client: TestClient, owner: LocalAccount, smart_account: str) -> None:
    # Through the application's RPC provider pool.
    assert client.app.state.musdpay.auth.eth_call.__qualname__.startswith("pool_eth_call")  # type: ignore[attr-defined]
    message = siwe_message(smart_account, new_nonce(client))
    response = client.post(VERIFY, json={"message": message, "signature": sign(owner, message)})
    assert response.status_code == 200, response.text
    assert response.json()["walletAddress"] == smart_account
    me = client.get("/api/v1/auth/me", headers=bearer(response.json()["accessToken"]))
    assert me.json()["subject"] == smart_account


def test_a_signature_the_smart_account_refuses_is_401(client: TestClient, smart_account: str) -> None:
    message = siwe_message(smart_account, new_nonce(client))
    response = client.post(VERIFY, json={"message": message, "signature": sign(wallet_account(12), message)})
    assert_problem(response, 401, "siwe-signature-invalid")


def test_an_eoa_still_signs_in_with_a_chain_configured(client: TestClient) -> None:
    account = wallet_account(13)
    message = siwe_message(account.address, new_nonce(client))
    assert client.post(VERIFY, json={"message": message, "signature": sign(account, message)}).status_code == 200
    other = siwe_message(account.address, new_nonce(client))
    refused = client.post(VERIFY, json={"message": other, "signature": sign(wallet_account(14), other)})
    assert_problem(refused, 401, "siwe-signature-invalid")  # eth_call to an EOA returns nothing: refused


def test_an_unreachable_chain_is_a_503_problem_not_a_401(
    database_url: str, factory: sessionmaker[Session], smart_account: str, owner: LocalAccount
) -> None:
    settings = auth_settings(database_url, rpc_providers=f"down=http://127.0.0.1:{free_port()}", rpc_timeout_seconds=2)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        message = siwe_message(smart_account, new_nonce(client))
        response = client.post(VERIFY, json={"message": message, "signature": sign(owner, message)})
    assert_problem(response, 503, "signature-check-unavailable")
    assert response.headers["retry-after"] == "5"
