"""The runner's warm server (``cnnscope.runner.warm``) and the stage side of it (``cnnscope.handoff``):
a stage process handed to the server behaves, for DVC and the user, as the stage run by itself —
same output streams, folder, arguments, environment and exit status, Ctrl-C and a killed client
included. (That the outputs are the same bytes is checked on whole studies, in test_runner_study.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnnscope.handoff import ENV
from cnnscope.runner import warm
from pipeline import BIN, clean_env

pytestmark = pytest.mark.slow  # Python processes, one of them importing torch

STAGE = """
import os, sys, time
from cnnscope.errors import CnnscopeError, run_stage

def main():
    print("ran", os.getpid(), os.getcwd(), sys.argv[1:], os.environ.get("MARK"), "torch" in sys.modules, flush=True)
    print("to stderr", file=sys.stderr)
    if sys.argv[1] == "bad":
        raise CnnscopeError("bad input: say how to fix it")
    if sys.argv[1] == "bug":
        raise RuntimeError("a bug")
    if sys.argv[1] == "sleep":
        open(sys.argv[2], "w").close()
        time.sleep(60)
    if sys.argv[1] == "exit":
        sys.exit(int(sys.argv[2]))

if __name__ == "__main__":
    run_stage(main)
"""


def start_server(folder: Path, warm: bool = True) -> tuple[subprocess.Popen[bytes], str]:
    """A warm server, as a runner worker starts it, and its socket; ``warm``: once it has imported
    everything it imports (it says "warm"), else as soon as it listens."""
    folder.mkdir(exist_ok=True)
    socket = str(folder / "socket")
    proc = subprocess.Popen(
        [str(BIN / "python"), "-m", "cnnscope.runner.warm", socket], env=clean_env(), stdout=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while not os.path.exists(socket):
        assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    if warm:
        assert proc.stdout is not None and proc.stdout.readline() == b"warm\n"
    return proc, socket


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, socket = start_server(tmp_path_factory.mktemp("warm"))
    yield socket
    proc.kill()
    proc.wait()


def sleeping_stage(stage: Path, socket: str, ready: Path) -> tuple[subprocess.Popen[str], int]:
    """A client whose copy sleeps, once the copy has started; and the copy's pid."""
    client = subprocess.Popen([str(BIN / "python"), "stage.py", "sleep", str(ready)], cwd=stage,
                              env=clean_env() | {ENV: socket}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    _wait_for(ready)
    return client, int(client.stdout.readline().split()[1])  # type: ignore[union-attr]


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    (tmp_path / "stage.py").write_text(STAGE)
    return tmp_path


def run(stage: Path, args: list[str], socket: str | None) -> subprocess.CompletedProcess[str]:
    env = clean_env() | {"MARK": "m1"} | ({ENV: socket} if socket else {})
    return subprocess.run(
        [str(BIN / "python"), "stage.py", *args], cwd=stage, env=env, capture_output=True, text=True, timeout=120
    )


def fields(done: subprocess.CompletedProcess[str]) -> list[str]:
    line = next(line for line in done.stdout.splitlines() if line.startswith("ran "))
    return line.split(" ", 2)[2].rsplit(" ", 2)


def test_a_handed_off_stage_is_the_stage_run_by_itself(server: str, stage: Path) -> None:
    warm_run, cold_run = run(stage, ["ok", "x y"], server), run(stage, ["ok", "x y"], None)
    assert warm_run.returncode == cold_run.returncode == 0, warm_run.stderr
    # the same folder, arguments and environment, its streams in the client's, and not the client's
    # own process: the copy found torch already imported
    assert fields(warm_run)[:2] == fields(cold_run)[:2] == [f"{stage} ['ok', 'x y']", "m1"]
    assert (fields(warm_run)[2], fields(cold_run)[2]) == ("True", "False")
    assert warm_run.stderr.strip() == cold_run.stderr.strip() == "to stderr"


@pytest.mark.parametrize(
    ("mode", "code", "said"), [("bad", 2, "cnnscope: error: bad input"), ("bug", 1, "RuntimeError: a bug")]
)
def test_a_failing_stage_fails_the_same_way(server: str, stage: Path, mode: str, code: int, said: str) -> None:
    for socket in (server, None):
        done = run(stage, [mode], socket)
        assert done.returncode == code and said in done.stderr, (socket, done.stderr)


@pytest.mark.parametrize("code", [0, 3, 256, -1])
def test_the_exit_status_the_copy_reports_is_the_process_status(server: str, stage: Path, code: int) -> None:
    """A finishing copy writes its status to the server, which tells the client before the copy's
    process is gone: the status is the one the kernel gives a process exiting with that code."""
    warm_run, cold_run = run(stage, ["exit", str(code)], server), run(stage, ["exit", str(code)], None)
    assert warm_run.returncode == cold_run.returncode == code & 0xFF, warm_run.stderr


def test_ctrl_c_reaches_the_copy(server: str, stage: Path, tmp_path: Path) -> None:
    client, _ = sleeping_stage(stage, server, tmp_path / "ready")
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=30)
    assert client.returncode == 130 and "cnnscope: interrupted" in err


def test_a_killed_client_takes_its_copy_with_it(server: str, stage: Path, tmp_path: Path) -> None:
    """The shim kills its stage's process group when the worker dies: the copy must not run on."""
    client, copy = sleeping_stage(stage, server, tmp_path / "ready")
    client.kill()
    client.wait()
    _wait_until_gone(copy, "the copy outlived its client")


def test_a_stopped_server_takes_no_new_stage_and_lets_the_running_one_finish(stage: Path, tmp_path: Path) -> None:
    proc, socket = start_server(tmp_path / "server")
    client, copy = sleeping_stage(stage, socket, tmp_path / "ready")
    proc.terminate()  # what the worker's end does
    deadline = time.monotonic() + 10
    while os.path.exists(socket):
        assert time.monotonic() < deadline, "the stopped server still takes stages"
        time.sleep(0.05)
    assert proc.poll() is None and _alive(copy)  # the running stage is not cut short
    client.send_signal(signal.SIGINT)  # it stops the way the shim stops it
    _, err = client.communicate(timeout=30)
    assert client.returncode == 130 and "cnnscope: interrupted" in err
    assert proc.wait(30) == 0


def test_a_server_that_dies_mid_stage_fails_the_stage_saying_so(stage: Path, tmp_path: Path) -> None:
    proc, socket = start_server(tmp_path / "server")
    client, copy = sleeping_stage(stage, socket, tmp_path / "ready")
    proc.kill()
    proc.wait()
    _, err = client.communicate(timeout=30)
    assert client.returncode == 1 and "warm server ended while it ran this stage" in err
    _wait_until_gone(copy, "the copy outlived its server")


def test_a_stage_that_comes_while_the_server_imports_starts_in_a_copy_at_once(stage: Path, tmp_path: Path) -> None:
    """The server imports one package at a time between taking stages: the runner's first stages do
    not wait for all of them (the copy imports what it lacks itself)."""
    proc, socket = start_server(tmp_path / "server", warm=False)
    try:
        env = clean_env() | {ENV: socket}
        client = subprocess.Popen([str(BIN / "python"), "stage.py", "ok"], cwd=stage, env=env, stdout=subprocess.PIPE,
                                  text=True)  # fmt: skip
        out, _ = client.communicate(timeout=120)
        assert client.returncode == 0
        assert int(out.split()[1]) != client.pid  # ran in the server's copy, not in the client
        assert proc.stdout is not None and proc.stdout.readline() == b"warm\n"  # and the server went on
    finally:
        proc.kill()
        proc.wait()


#: Imported first by the server of the test below: returns once a client waits to be accepted.
GATE = """
import os, select, socket
for fd in map(int, os.listdir("/proc/self/fd")):
    try:
        s = socket.socket(fileno=fd)
    except OSError:
        continue
    try:
        if s.getsockname() == os.environ["GATE_SOCKET"]:
            select.select([s], [], [], 60)
    finally:
        s.detach()
"""
#: Imported next: holds the server's loop until the test lets it go.
BLOCKING = """
import os, time
while not os.path.exists("go-on"):
    time.sleep(0.02)
"""


def test_a_stage_that_ends_while_the_server_imports_is_told_at_once(stage: Path, tmp_path: Path) -> None:
    """An import holds the server's loop (torch's, Lightning's: seconds), and a worker's first stages
    end while it runs: the server reaps them mid-import, so their clients need not wait for it. Here
    the stage is taken between two imports, and the second lasts until the test ends it."""
    (tmp_path / "gate.py").write_text(GATE)
    (tmp_path / "blocking.py").write_text(BLOCKING)
    socket = str(tmp_path / "socket")
    serve = f"from cnnscope.runner import warm; warm.PRELOAD = ('gate', 'blocking'); warm.serve({socket!r})"
    env = clean_env() | {"PYTHONPATH": str(tmp_path), "GATE_SOCKET": socket}
    proc = subprocess.Popen([str(BIN / "python"), "-c", serve], cwd=tmp_path, env=env, stdout=subprocess.PIPE)
    try:
        _wait_for(Path(socket))
        client = subprocess.Popen([str(BIN / "python"), "stage.py", "ok"], cwd=stage, env=clean_env() | {ENV: socket},
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        out, _ = client.communicate(timeout=60)
        assert client.returncode == 0
        assert int(out.split()[1]) != client.pid  # ran in the server's copy
        assert proc.poll() is None  # the server still imports
    finally:
        (tmp_path / "go-on").touch()
        proc.kill()
        proc.wait()


def test_no_server_listening_runs_the_stage_itself(stage: Path, tmp_path: Path) -> None:
    done = run(stage, ["ok"], str(tmp_path / "nothing-here"))
    assert done.returncode == 0 and fields(done)[2] == "False"


def test_the_server_refuses_another_python() -> None:
    assert warm._refusal({"executable": sys.executable}) is None
    assert "another Python" in str(warm._refusal({"executable": "/elsewhere/bin/python"}))


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, "the stage never started"
        time.sleep(0.05)


def _wait_until_gone(pid: int, why: str) -> None:
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended; its parent reaps it


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no scheduler autogroups on this kernel")
def test_the_server_runs_as_niced_as_its_worker() -> None:
    """Its copies run in its session: `nice cnnscope repro` must reach that session's group too."""
    psutil = pytest.importorskip("psutil")
    code = "import time; from cnnscope.runner.task import warm_server as w; print(w({}), flush=True); time.sleep(60)"
    worker = subprocess.Popen(["nice", "-n", "7", str(BIN / "python"), "-c", code], env=clean_env(),
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip()
        (server,) = psutil.Process(worker.pid).children()
        expected = min(19, os.nice(0) + 7)
        assert Path(f"/proc/{server.pid}/autogroup").read_text().split()[-1] == str(expected)
    finally:
        worker.kill()
        worker.wait()


def test_the_shim_hands_over_only_this_pythons_own_dvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another `dvc` first on PATH (a pipx install, say) runs as itself: the server would run its own."""
    from cnnscope.runner import shim

    monkeypatch.setenv(ENV, str(tmp_path / "nothing-listens-here"))
    assert shim._warm_dvc(["python", "-c", "pass"]) is None  # not DVC: never handed over
    other = tmp_path / "bin"
    other.mkdir()
    (other / "dvc").write_text("#!/bin/sh\n")
    (other / "dvc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{other}{os.pathsep}{os.environ['PATH']}")
    assert shim._warm_dvc(["dvc", "repro"]) is None
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    calls: list[tuple[list[str], str | None, bool]] = []
    monkeypatch.setattr(
        shim.handoff, "start", lambda argv, module=None, pass_on=False: calls.append((argv, module, pass_on))
    )
    shim._warm_dvc(["dvc", "repro"])
    assert calls == [(["dvc", "repro"], "dvc", True)]  # this Python's dvc: to the server, which keeps its address


@pytest.mark.parametrize(("argv", "polls"), [(["dvc", "--wait-for-lock", "repro"], True), (["dvc", "repro"], False)])
def test_a_dvc_that_waits_for_its_lock_retries_it_sooner(
    argv: list[str], polls: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DVC retries a taken repository lock every DEFAULT_TIMEOUT / 6 s (0.5 s); in a copy that runs
    `dvc --wait-for-lock` it retries every LOCK_POLL s. Without the flag DVC gives up after
    DEFAULT_TIMEOUT, so that run keeps DVC's own timing."""
    import dvc.lock

    monkeypatch.setattr(dvc.lock, "DEFAULT_TIMEOUT", 3)
    warm.poll_dvc_lock_often(argv)
    assert pytest.approx(warm.LOCK_POLL if polls else 0.5) == dvc.lock.DEFAULT_TIMEOUT / 6
