"""Weights saved along training: which gradient steps, and where they live.

The trajectory stage asks how each map develops over training, so every trained network keeps its
weights at a few gradient steps, log-spaced because most of the change happens early (step 0,
several inside the first epoch, the last). They are written weights-only (the layout of
:func:`cnnscope.models.save_checkpoint`, no optimiser state) into ``checkpoints/`` inside the
run's output folder, so DVC records them with the model. Runs of different lengths (a network on
the full split and one on a subset) must meet at equal step counts for a matched-step comparison,
so a count also takes the 1-2-5 steps (1, 2, 5, 10, 20, …) that every run shares.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: The folder, inside ``models/<variant>/seed<k>/``, holding the weights along training.
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"step(\d+)\.ckpt")


def step_file(folder: Path, step: int) -> Path:
    """``<folder>/checkpoints/step0000123.ckpt``: names sort in step order."""
    return folder / CHECKPOINT_DIR / f"step{step:07d}.ckpt"


def saved_steps(folder: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint saved along training in a run's folder, by step."""
    files = (folder / CHECKPOINT_DIR).glob("step*.ckpt")
    return sorted((int(m.group(1)), p) for p in files if (m := _NAME.fullmatch(p.name)))


def decade_steps(total: int) -> list[int]:
    """The 1-2-5 steps up to ``total``: shared by every run, whatever its length."""
    out, base = [], 1
    while base <= total:
        out += [s for s in (base, 2 * base, 5 * base) if s <= total]
        base *= 10
    return out


def checkpoint_schedule(spec: int | Sequence[int], total: int) -> list[int]:
    """The gradient steps to save for a run of ``total`` steps: step 0 and the last always; a count
    ``n`` adds ``n`` log-spaced steps (as many distinct ones as the run has) and the 1-2-5 steps; a
    list adds its own steps (checked against the run by the configuration)."""
    if total < 0:
        raise ValueError(f"a run has at least 0 steps, got {total}")
    if not isinstance(spec, int):
        return sorted({0, total, *(int(s) for s in spec if 0 <= s <= total)})
    wanted = min(spec, total + 1)
    points = max(wanted - 1, 1)
    steps = {0, total}
    while len(steps) < wanted:
        steps = {0, total, *np.rint(np.geomspace(1, max(total, 1), points)).astype(int).tolist()}
        points += 1
    return sorted(steps | set(decade_steps(total)))
