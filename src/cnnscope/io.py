"""Atomic writes and provenance shared by the stages.

Every file a stage produces is written to a temporary name in the same folder and renamed into
place only when complete, so a crash, a bad input or Ctrl-C leaves the previous state intact.
Where each output lives and what it is called is :mod:`cnnscope.layout`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cnnscope.layout import MANIFEST

if TYPE_CHECKING:  # imported where used: every stage imports this module, not all read tables
    import pandas as pd


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks so a large checkpoint or dataset needs no extra memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_write(path: str | Path, binary: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for DVC), atomically.

    NaN and infinities (e.g. a standard deviation over one seed) become ``null``: they are not
    JSON, and strict readers (browsers, MLflow's UI, ``jq``) reject them.
    """
    with atomic_write(path) as fh:
        json.dump(_finite(obj), fh, indent=2, sort_keys=True, default=str, allow_nan=False)
        fh.write("\n")


def read_table(path: str | Path) -> pd.DataFrame | None:
    """A CSV a stage writes only when it has rows: None when the file is missing or has no columns
    (e.g. no feature-map layer to match, no probe class with two images)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None


def _finite(obj: Any) -> Any:
    numpy = sys.modules.get("numpy")  # not imported here: a stage hands off before its imports run
    if numpy is not None and isinstance(obj, numpy.generic):  # numpy scalars → Python numbers
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name; swap it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        replace_dir(tmp, path)
    except BaseException:
        _rmtree(tmp)
        raise


def replace_dir(new: Path, path: Path) -> None:
    """Put the finished folder ``new`` in place of ``path`` (which may exist): two renames, so at
    every moment ``path`` is either the old folder or the new one."""
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        _rmtree(old)  # left over by a crash between the two renames of an earlier run
        os.replace(path, old)
        os.replace(new, path)
        _rmtree(old)
    else:
        os.replace(new, path)


def clean_stale(path: Path) -> list[Path]:
    """Remove what an earlier, killed writer of ``path`` left beside it (``.<name>.*.tmp``,
    ``.<name>.old``); returns what was removed.

    A process killed by SIGKILL or a power cut cannot run its own cleanup, and a prepared CIFAR
    copy is hundreds of MB. Only one process writes a given output (DVC runs each stage once;
    under DDP only rank 0 writes), so anything matching is stale by the time the next run writes.
    """
    stale = [*path.parent.glob(f".{glob.escape(path.name)}.*.tmp"), path.with_name(f".{path.name}.old")]
    removed = [p for p in stale if p.exists() or p.is_symlink()]
    for item in removed:
        if item.is_dir() and not item.is_symlink():
            _rmtree(item)
        else:
            item.unlink(missing_ok=True)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


#: What ``dvc repro`` itself changes, so not "dirty" code: the lock files and reports/.
NOT_CODE = (":!dvc.lock", ":!stages/*/dvc.lock", ":!reports")


def git_commit(cwd: str | Path | None = None) -> str:
    """The current git commit (with ``-dirty`` if the tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(  # no optional locks: a `git status` that refreshes the index holds
            # .git/index.lock, and a stage running beside another stage's record made DVC's git add fail
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no", "--", ".", *NOT_CODE],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def provenance(params: dict[str, Any], data_dir: str | Path | None = None) -> dict[str, Any]:
    """What produced a result: the params it used, the git commit, and the prepared data's checksum.

    Stages store this beside every result (metrics JSON, manifests) so a number can always be
    traced back to its configuration and data. The checksum comes from ``data_dir``'s manifest
    when the folder has one (a stage run on hand-made data has none, and records no checksum).
    """
    record: dict[str, Any] = {"params": params, "git_commit": git_commit()}
    manifest = Path(data_dir) / MANIFEST if data_dir is not None else None
    if manifest is not None and manifest.is_file():
        data = json.loads(manifest.read_text())
        record["data_sha256"] = data.get("dataset_sha256")
        record["data_source"] = data.get("source")
    return record


def repo_root() -> Path:
    """The repository the pipeline belongs to: ``$DVC_ROOT``, else the git root, else the cwd.

    ``dvc exp run --queue`` runs stages in a temporary copy under ``.dvc/tmp/exps``; DVC then sets
    ``DVC_ROOT`` to the real repository, where shared things (the MLflow store, ``../shared``)
    live, and a path relative to the copy would point inside it.
    """
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return Path.cwd().resolve()
    return Path(top.stdout.strip()).resolve()


def resolve_user_path(path: str | Path) -> Path:
    """A user-given path: absolute as is, relative to :func:`repo_root` otherwise."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path
