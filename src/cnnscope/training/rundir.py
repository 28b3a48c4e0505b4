"""The folders of one training job: where it trains, when it may be resumed, when it replaces the last good model.

A job trains in a sibling working folder, ``<models>/<variant>/.seed<k>.partial/``, and its result
replaces ``<models>/<variant>/seed<k>/`` (the DVC output) only after the run succeeded
(:func:`promote`): a bad setting, a NaN loss, Ctrl-C or a crash leaves the last good model as it
was. The working folder survives an interruption, and the next run resumes its ``last.ckpt``
only when ``run_state.json`` says the run had the same fingerprint (same config, seed, data and
code), did not finish, and the checkpoint reads back as weights only. Anything else — another
fingerprint, a run killed before its first checkpoint, a truncated or corrupt ``last.ckpt`` — is
cleared and the job starts clean, reporting the MLflow run it abandons so the caller can close it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from cnnscope.io import replace_dir, write_json
from cnnscope.layout import LAST_CKPT
from cnnscope.models import CheckpointError, read_checkpoint
from cnnscope.tracking_ids import RUN_ID_FILE, read_run_id, record_model_run

STATE_FILE = "run_state.json"


def work_dir(out_dir: Path) -> Path:
    """The working folder of the job whose result goes to ``out_dir`` (not a DVC output)."""
    return out_dir.with_name(f".{out_dir.name}.partial")


@dataclass(frozen=True)
class RunStart:
    """Where a job trains and from what: decided once, before the Trainer exists."""

    work: Path
    #: ``last.ckpt`` to continue, or ``None`` for a clean start.
    resume: Path | None = None
    #: MLflow run of an unfinished run that will not be continued (to be marked KILLED).
    abandoned_run: str | None = None
    #: Why an unfinished run of the same job was not continued (e.g. its checkpoint is corrupt).
    problem: str | None = None


def _state(work: Path) -> dict[str, object]:
    path = work / STATE_FILE
    if not path.is_file():
        return {}
    try:
        state: dict[str, object] = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    return state


def resume_point(out_dir: Path, fingerprint: str) -> Path | None:
    """``last.ckpt`` of an unfinished run of the same job, else ``None`` (reads only).

    Non-zero DDP ranks call this: they must take the same decision as rank 0 without touching
    files (Lightning starts them after rank 0 has prepared the folder).
    """
    work = work_dir(out_dir)
    state, last = _state(work), work / LAST_CKPT
    if state.get("fingerprint") == fingerprint and not state.get("complete") and last.is_file():
        return last
    return None


def start_or_resume(out_dir: Path, fingerprint: str) -> RunStart:
    """Continue an unfinished run of the same job, or reset the working folder for a clean start.

    ``out_dir`` itself is never touched here.
    """
    work = work_dir(out_dir)
    last, problem = resume_point(out_dir, fingerprint), None
    if last is not None:
        try:
            read_checkpoint(last)  # weights only: a checkpoint carrying code is refused like a corrupt one
        except CheckpointError as err:
            problem = f"the interrupted run's {err}"
        else:
            return RunStart(work, resume=last)
    abandoned = read_run_id(work) if work.is_dir() else None
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    write_json(work / STATE_FILE, {"fingerprint": fingerprint, "complete": False})
    return RunStart(work, abandoned_run=abandoned, problem=problem)


def promote(work: Path, out_dir: Path, fingerprint: str) -> None:
    """Mark the run in ``work`` complete and put it in place of ``out_dir`` (the last good model)."""
    write_json(work / STATE_FILE, {"fingerprint": fingerprint, "complete": True})
    run_id = read_run_id(work)
    (work / RUN_ID_FILE).unlink(missing_ok=True)  # random: kept out of the DVC output (record_model_run)
    replace_dir(work, out_dir)
    if run_id is not None:
        record_model_run(out_dir, run_id)
