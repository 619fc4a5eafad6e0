"""The Dockerfile, parsed by a small instruction reader (no Docker here): pinned base images, a non-root final
stage, a health check, `musdpay` as the entrypoint, no [dev] extra, and a .dockerignore keeping local state out.
The wheel the image installs carries the package data the image's roles read at run time."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.services import ROOT

DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, each with its (KEYWORD, arguments) in order; continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=name))
        elif not stages and keyword == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def _stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))[1]


def _runtime() -> Stage:
    [runtime] = [s for s in _stages() if s.name == "runtime"]
    return runtime


def test_the_parser_reads_continuations_and_stages() -> None:
    args, stages = parse("ARG B=x:1.2\n# c\nFROM ${B} AS one\nRUN a \\\n  # note\n  && b\nFROM one\nUSER 5\n")
    assert args == {"B": "x:1.2"}
    assert [(s.image, s.name) for s in stages] == [("x:1.2", "one"), ("one", None)]
    assert stages[0].instructions == [("RUN", "a && b")]


def test_every_base_image_is_pinned() -> None:
    names = {s.name for s in _stages()}
    for stage in _stages():
        if stage.image in names:
            continue  # built on an earlier stage
        reference, _, digest = stage.image.partition("@")
        repository, _, tag = reference.rpartition(":")
        assert repository, f"{stage.image}: no tag"
        assert tag != "latest", stage.image
        assert re.fullmatch(r"\d+\.\d+\.\d+(-[a-z0-9.-]+)?", tag), f"{stage.image}: pin the full version"
        if digest:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), stage.image
    python = [s.image for s in _stages() if s.image.startswith("python:")]
    assert python
    assert len(set(python)) == 1, "build and runtime use the same Python"
    assert "@sha256:" in python[0]


def test_the_default_target_is_the_runtime_and_it_runs_as_a_fixed_non_root_user() -> None:
    stages = _stages()
    runtime = _runtime()
    # `docker build .` builds the last stage; the dev stage (anvil) comes after runtime, so compose names its
    # target explicitly and production builds must pass `--target runtime` or use docker-compose.yml.
    assert stages[-1].name == "dev"
    assert stages[-1].image == "runtime"
    [user] = runtime.all("USER")
    assert user.split(":")[0] not in {"root", "0"}
    assert user == "10001:10001"
    assert not stages[-1].all("USER"), "the dev stage inherits the runtime user"


def test_health_check_entrypoint_and_command() -> None:
    runtime = _runtime()
    [healthcheck] = runtime.all("HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert "urllib.request" in healthcheck
    assert "'3001'" in healthcheck
    assert json.loads(runtime.all("ENTRYPOINT")[0]) == ["musdpay"]
    assert json.loads(runtime.all("CMD")[0]) == ["serve", "--host", "0.0.0.0"]  # noqa: S104


def test_read_only_root_friendly() -> None:
    runtime = _runtime()
    assert runtime.all("VOLUME") == ['["/var/lib/musdpay"]']
    env = " ".join(runtime.all("ENV"))
    for setting in ("HOME=/var/lib/musdpay", "PYTHONDONTWRITEBYTECODE=1", "MPLCONFIGDIR=/var/lib/musdpay/"):
        assert setting in env


def test_no_dev_dependencies_and_only_wheels_in_the_runtime() -> None:
    for stage in _stages():
        for command in stage.all("RUN"):
            assert not re.search(r"\[dev\]|requirements-dev", command), command
    [build] = [s for s in _stages() if s.name == "build"]
    assert any(cmd.startswith("pip wheel") for cmd in build.all("RUN"))
    [install] = _runtime().all("RUN")
    assert "--no-index --find-links /wheels musdpay" in install
    assert not _runtime().all("COPY"), "the runtime gets nothing but the wheels"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".git", ".venv", "node_modules", ".musdpay", "dev.sqlite*", "alerts/dev-secrets",
                  "deploy/compose/secrets", ".pytest_cache", ".mypy_cache", "tests"):  # fmt: skip
        assert entry in ignored, entry
    # What the Dockerfile copies must not be ignored.
    for stage in _stages():
        for copy in stage.all("COPY"):
            if copy.startswith("--from"):
                continue
            for source in copy.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert source not in ignored, source


def test_the_dev_stage_puts_anvil_and_the_artifact_where_sandbox_chain_looks() -> None:
    from sandbox.chain import anvil, artifact

    # ROOT of sandbox/chain is its package's parent: site-packages once installed from the wheel.
    assert Path(anvil.__file__).resolve().parents[2] == anvil.ROOT
    relative = artifact.MUSD_ARTIFACT.relative_to(anvil.ROOT).as_posix()
    [dev] = [s for s in _stages() if s.name == "dev"]
    site_packages = "/opt/musdpay/lib/python3.11/site-packages"
    copies = dev.all("COPY")
    assert f"{relative} {site_packages}/{relative}" in copies
    assert any(c.endswith(f"{site_packages}/node_modules/@foundry-rs") for c in copies)
    assert re.search(r"python:3\.11\.", _stages()[0].image), "site-packages path is python3.11's"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The project's wheel, as the Dockerfile's build stage makes it (without the dependencies)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(out)],
        check=True,
        timeout=300,
    )
    [path] = out.glob("musdpay-*.whl")
    return zipfile.ZipFile(path)


@pytest.mark.integration
def test_the_wheel_carries_what_the_image_roles_read_at_run_time(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for needed in ("alerts/alertmanager.yml", "alerts/templates/musdpay.tmpl", "payment/migrations/env.py"):
        assert needed in names, needed
    assert any(n.startswith("payment/migrations/versions/") for n in names)
    assert not any(n.startswith("tests/") for n in names)
