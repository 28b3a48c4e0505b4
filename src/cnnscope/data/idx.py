"""A strict reader for IDX files (the MNIST / Fashion-MNIST format), gzipped or not.

torchvision's reader checks the header with bare ``assert``s; a truncated download or a
renamed file then fails without saying which file or why. This reader validates magic, rank,
type and length and names the file in every error.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from cnnscope.errors import CnnscopeError

# IDX type byte → numpy big-endian dtype
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxError(CnnscopeError):
    """An IDX file is corrupt, truncated or not IDX at all."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` transparently) into a native-endian numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as err:
        raise IdxError(f"cannot read {path}: {err} — re-download or re-extract the file") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or not 1 <= data[3] <= 4:
        raise IdxError(
            f"{path} is not an IDX file (bad magic {data[:4].hex() or 'empty'}); "
            "expected MNIST-style files such as train-images-idx3-ubyte[.gz]"
        )
    dtype, ndim = _IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{path} is truncated inside its header ({len(data)} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise IdxError(
            f"{path} has {len(data)} bytes but its header {shape} needs {expected}: the file is "
            "truncated or corrupt — re-download it"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
