"""The compiled MUSD contract, as committed in contracts/artifacts/MUSD.json by contracts/compile.js.

Deploying from the committed artifact keeps node out of the chain's start-up path; a test recompiles the
source and fails when the artifact is stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sandbox.chain.anvil import ROOT

__all__ = ["MUSD_ARTIFACT", "Artifact", "musd_artifact"]

MUSD_ARTIFACT = ROOT / "contracts" / "artifacts" / "MUSD.json"


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-prefixed creation code
    deployed_bytecode: str  # 0x-prefixed runtime code, what eth_getCode returns after deployment


@cache
def musd_artifact(path: Path = MUSD_ARTIFACT) -> Artifact:
    data = json.loads(path.read_text())
    return Artifact(data["contractName"], data["abi"], data["bytecode"], data["deployedBytecode"])
