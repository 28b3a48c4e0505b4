"""A finished stage ends without the interpreter's teardown, and loses nothing by it (issue 23).

``cnnscope.errors.run_stage`` ends a successful stage that is its process's program with
``os._exit`` after the ``atexit`` handlers, logging and the standard streams are done. These tests run
a small stage script as DVC does (``python <script>``) and check what a user relies on: status 0, its
output, its buffered log line and its ``atexit`` work are all there; the same script run inside
another program (as the tests run stages, through ``runpy``) returns normally, and a stage that leaves
a non-daemon thread running still waits for it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO_ROOT

STAGE = textwrap.dedent(
    """
    import atexit, sys, tempfile, threading, time
    from pathlib import Path
    from cnnscope.errors import run_stage

    out = Path(sys.argv[1])

    def main():
        scratch = tempfile.TemporaryDirectory(dir=out)  # removed by its finalizer at exit
        (out / "scratch").write_text(scratch.name)
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        if len(sys.argv) > 2:  # a worker thread the stage did not join
            threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("done"))).start()
        (out / "result").write_text("written")
        print("last line, unflushed", end="")

    if __name__ == "__main__":
        run_stage(main)
        (out / "teardown").write_text("the interpreter went on after the stage")
    """
)


def _run(tmp_path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "stage.py"
    script.write_text(STAGE)
    env = {"PYTHONPATH": str(REPO_ROOT / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_stage_run_as_a_script_exits_early_with_everything_done(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    done = _run(tmp_path, "stage.py", "out")
    out = tmp_path / "out"
    assert done.returncode == 0, done.stderr
    assert done.stdout == "last line, unflushed"
    assert (out / "result").read_text() == "written" and (out / "atexit").read_text() == "ran"
    assert not Path((out / "scratch").read_text()).exists()  # the temporary folder's finalizer ran
    assert not (out / "teardown").exists()  # it ended in run_stage


def test_a_stage_inside_another_program_returns_normally(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    runner = "import runpy, sys; sys.argv = ['stage.py', 'out']; runpy.run_path('stage.py', run_name='__main__')"
    done = _run(tmp_path, "-c", runner)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "teardown").exists() and (tmp_path / "out" / "atexit").exists()


def test_a_stage_that_leaves_a_thread_running_waits_for_it(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    done = _run(tmp_path, "stage.py", "out", "thread")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "thread").read_text() == "done"
    assert (tmp_path / "out" / "teardown").exists()  # the ordinary exit, which joins the thread
