"""The output folder of one training job, and when it may be resumed.

The stage's folder is a DVC ``persist`` output, so an interrupted run's ``last.ckpt`` survives
until the stage is re-run. It is resumed only when ``run_state.json`` says the previous run had
the same fingerprint (same config, seed and data) and did not finish; any other content —
a finished run, a different config, a stray file — is cleared, so a stale checkpoint is never
continued and a completed stage re-run (code changed) retrains from scratch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cnnscope.io import write_json

STATE_FILE = "run_state.json"
LAST_CKPT = "last.ckpt"


def _state(out_dir: Path) -> dict[str, object]:
    path = out_dir / STATE_FILE
    if not path.is_file():
        return {}
    try:
        state: dict[str, object] = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    return state


def resume_point(out_dir: Path, fingerprint: str) -> Path | None:
    """``last.ckpt`` of an unfinished run of the same job, else ``None`` (reads only).

    Non-zero DDP ranks call this: they must take the same decision as rank 0 without touching files.
    """
    state, last = _state(out_dir), out_dir / LAST_CKPT
    if state.get("fingerprint") == fingerprint and not state.get("complete") and last.is_file():
        return last
    return None


def start_or_resume(out_dir: Path, fingerprint: str) -> Path | None:
    """The checkpoint to resume from, or ``None`` after resetting ``out_dir`` for a fresh run."""
    last = resume_point(out_dir, fingerprint)
    if last is not None:
        return last
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    write_json(out_dir / STATE_FILE, {"fingerprint": fingerprint, "complete": False})
    return None


def mark_complete(out_dir: Path, fingerprint: str) -> None:
    write_json(out_dir / STATE_FILE, {"fingerprint": fingerprint, "complete": True})
