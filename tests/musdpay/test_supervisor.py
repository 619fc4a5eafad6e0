"""The process tree of `musdpay dev` (musdpay/supervisor.py), with real processes: small Python children that
announce themselves, serve HTTP, start children of their own, ignore SIGTERM or die."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from musdpay.supervisor import StartError, Supervisor
from tests.support.processes import alive, descendants
from tests.support.services import ROOT, free_port
from tests.support.waiting import wait_until

PY = sys.executable

# A child that starts a grandchild (as `musdpay sandbox chain` starts anvil), announces itself, logs, and waits.
ANNOUNCING = textwrap.dedent(
    """
    import json, subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("warming up", flush=True)
    print(json.dumps({"url": "http://example.invalid", "grandchild": grandchild.pid}), flush=True)
    print("serving", flush=True)
    print("a warning on stderr", file=sys.stderr, flush=True)
    time.sleep(600)
    """
)
# A child that serves HTTP 200 on a port once ready (as the API's /healthz).
SERVING = textwrap.dedent(
    """
    import http.server, sys
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers()
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
    """
)
# It announces itself only once SIGTERM is ignored: a signal sent before that would simply kill it (a race CI hit).
STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('{\"stubborn\": true}', flush=True)\n"
    "time.sleep(600)"
)


def _script(tmp_path: Path, body: str) -> str:
    """A supervisor in its own process (so that signals reach it as they would `musdpay dev`)."""
    path = tmp_path / "tree.py"
    path.write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom musdpay.supervisor import Supervisor\n"
        + "supervisor = Supervisor({}, out=sys.stdout, stop_grace=2)\nsupervisor.install_signal_handlers()\n"
        + textwrap.dedent(body)
    )
    return str(path)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_every_child_and_grandchild_and_exits_0(tmp_path: Path, signum: int) -> None:
    port = free_port()
    script = _script(
        tmp_path,
        f"""
        supervisor.start("chain", [sys.executable, "-c", {ANNOUNCING!r}], announces=True)
        supervisor.start("api", [sys.executable, "-c", {SERVING!r}, "{port}"], ready_url="http://127.0.0.1:{port}/")
        supervisor.start("stubborn", [sys.executable, "-c", {STUBBORN!r}], announces=True)
        supervisor.say("READY")
        sys.exit(supervisor.wait())
        """,
    )
    tree = subprocess.Popen([PY, script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert tree.stdout is not None
    lines: list[str] = []
    for line in tree.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("READY"):
            break
    wait_until(lambda: len(descendants(tree.pid)) >= 4, timeout=10, what="children and the grandchild")
    processes = descendants(tree.pid)
    tree.send_signal(signum)
    rest, _ = tree.communicate(timeout=30)
    assert tree.returncode == 0
    assert [process for process in processes if alive(process)] == []
    output = lines + rest.splitlines()
    # Each child's lines prefixed with its name; the JSON start line is the supervisor's, not shown.
    assert "chain        | warming up" in output
    assert "chain        | serving" in output
    assert "chain        | a warning on stderr" in output
    assert not any('"grandchild"' in line for line in output)
    assert any("stubborn did not stop within 2 s: killed" in line for line in output)


def test_children_do_not_outlive_a_supervisor_killed_outright(tmp_path: Path) -> None:
    port = free_port()
    script = _script(
        tmp_path,
        f"""
        supervisor.start("api", [sys.executable, "-c", {SERVING!r}, "{port}"], ready_url="http://127.0.0.1:{port}/")
        supervisor.start("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"])
        supervisor.say("READY")
        sys.exit(supervisor.wait())
        """,
    )
    tree = subprocess.Popen([PY, script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert tree.stdout is not None
    for line in tree.stdout:
        if line.startswith("READY"):
            break
    processes = descendants(tree.pid)
    assert len(processes) == 2
    tree.kill()  # SIGKILL: no handler runs; the kernel's parent-death signal must stop the children
    tree.wait(timeout=10)
    wait_until(lambda: not any(alive(p) for p in processes), timeout=20, what="the children to stop")


def test_a_child_that_dies_stops_the_others_and_exits_1(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        f"""
        supervisor.start("chain", [sys.executable, "-c", {ANNOUNCING!r}], announces=True)
        supervisor.start("api", [sys.executable, "-c", "import time, sys; time.sleep(1); sys.exit(3)"])
        sys.exit(supervisor.wait())
        """,
    )
    tree = subprocess.Popen([PY, script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    wait_until(lambda: len(descendants(tree.pid)) >= 2, timeout=10, what="the children")
    processes = descendants(tree.pid)
    out, _ = tree.communicate(timeout=30)
    assert tree.returncode == 1
    assert "api exited with code 3: stopping everything" in out
    assert [process for process in processes if alive(process)] == []


def test_a_child_that_fails_to_start_is_named_with_its_last_words() -> None:
    out = io.StringIO()
    supervisor = Supervisor({}, out=out, start_timeout=20)
    try:
        with pytest.raises(StartError, match="api exited with code 2 while starting"):
            supervisor.start(
                "api",
                [PY, "-c", "import sys; print('address already in use', file=sys.stderr); sys.exit(2)"],
                ready_url=f"http://127.0.0.1:{free_port()}/",
            )
    finally:
        supervisor.stop()
    assert "api          | address already in use" in out.getvalue()


def test_a_child_that_never_announces_times_out() -> None:
    supervisor = Supervisor({}, out=io.StringIO(), start_timeout=1)
    try:
        with pytest.raises(StartError, match="silent was not ready within 1 s"):
            supervisor.start("silent", [PY, "-c", "import time; time.sleep(600)"], announces=True)
        processes = [child.popen for child in supervisor.children]
    finally:
        supervisor.stop()
    assert all(process.poll() is not None for process in processes)


def test_the_announcement_is_returned() -> None:
    supervisor = Supervisor({"MUSDPAY_MARK": "x"}, out=io.StringIO())
    program = "import json, os; print(json.dumps({'mark': os.environ['MUSDPAY_MARK']}), flush=True); input()"
    try:
        child = supervisor.start("echo", [PY, "-c", program], announces=True)
    finally:
        supervisor.stop()
    assert child.announced == {"mark": "x"}
    assert json.dumps(child.announced)
