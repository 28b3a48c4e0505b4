"""The atlas site: pages, links, sprite sheets, bad output folders."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from atlas_study import build_atlas
from cnnscope.atlas import AtlasError, NetworkLayer, folder_size, site, write_atlas
from cnnscope.atlas.collect import channel_sources
from cnnscope.atlas.sprites import to_uint8, write_sheet
from cnnscope.models import build_model
from conftest import knobs

REPO_ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "figures"
LINK = re.compile(r'(?:href|src)="([^"]+)"')


@pytest.fixture(scope="module")
def atlas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import synthetic_prepared

    return build_atlas(synthetic_prepared(), tmp_path_factory.mktemp("study"))


def test_every_page_and_every_link_exists(atlas: Path) -> None:
    root = atlas.parent
    pages = sorted(root.rglob("*.html"))
    layer_pages = [p for p in pages if p.parent.name == "layers"]
    map_pages = [p for p in pages if p.parent.parent.name == "maps"]
    assert len(layer_pages) == 3 * 2  # pool1, pool2, relu3 × 2 networks
    assert len(map_pages) == 32 + 64 + 128
    for page in pages:
        for link in LINK.findall(page.read_text()):
            if link.startswith("data:image/png;base64,"):  # overview.html embeds its figure
                continue
            assert not link.startswith(("http:", "https:", "//")), (page, link)
            assert (page.parent / link).resolve().is_file(), (page, link)


def test_overview_is_self_contained_for_mlflow(atlas: Path) -> None:
    text = (atlas.parent / "overview.html").read_text()
    assert "<style>" in text and "stylesheet" not in text and "href=" not in text
    sources = re.findall(r'src="([^"]+)"', text)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)


def test_index_lists_layers_by_networks(atlas: Path) -> None:
    text = atlas.read_text()
    for name in ("benchmark seed0", "untrained seed0", "pool1", "pool2", "relu3"):
        assert name in text
    assert 'href="layers/relu3--untrained_seed0.html"' in text


def test_map_page_shows_every_network_with_strips_and_nodes(atlas: Path) -> None:
    text = (atlas.parent / "maps" / "relu3" / "0.html").read_text()
    assert text.count("<tr><th><a href") == 2
    assert "evolution (steps [0, 3])" in text and "every start" in text
    assert "one OIP per node" in text  # map 0 is the node-OIP map in the test study
    assert "<th>OIP ÷ top</th>" in text and "path (pool1, pool2)" in text


def test_atlas_is_small_and_uses_few_image_files(atlas: Path) -> None:
    size, files = folder_size(atlas.parent)
    sprites = list((atlas.parent / "sprites").glob("*.png"))
    assert len(sprites) == 2 * 3 + 2 * 2  # exemplars per layer, OIPs and nodes of relu3, per network
    assert files == len(sprites) + 1 + 6 + 224 + 3  # + style.css, layer/map pages, index, overview + its PNG
    assert size < 3_000_000


def test_sheet_tiles_are_where_the_page_says(tmp_path: Path) -> None:
    tiles = np.arange(2 * 3 * 1 * 4 * 5, dtype=np.uint8).reshape(2, 3, 1, 4, 5)
    sheet = write_sheet(tiles, tmp_path, "s.png")
    grid = np.asarray(Image.open(tmp_path / "s.png"))
    assert grid.shape == (8, 15)
    np.testing.assert_array_equal(grid[4:8, 10:15], tiles[1, 2, 0])
    assert 'style="left:-20px;top:-8px"' in sheet.tile(1, 2, 2) and "s_2 img{width:30px}" in sheet.css(2)
    stretched = to_uint8(np.array([[[[-1.0, 0.0], [1.0, 3.0]]]]))
    assert stretched.min() == 0 and stretched.max() == 255


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    tiles = np.random.default_rng(0).random((3, 2, 3, 6, 6))
    write_sheet(tiles, tmp_path, "a.png")
    write_sheet(tiles, tmp_path, "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def _record(n_maps: int) -> NetworkLayer:
    return NetworkLayer(
        "v", 0, "relu1", pd.DataFrame({"map": range(n_maps)}), crops=np.zeros((n_maps, 2, 1, 3, 3), np.uint8)
    )


def test_an_atlas_folder_that_is_a_file_is_refused_and_kept(tmp_path: Path) -> None:
    target = tmp_path / "atlas"
    target.write_text("mine")
    with pytest.raises(AtlasError, match="exists and is a file"):
        write_atlas("s", [_record(2)], target)
    assert target.read_text() == "mine"


def test_a_layer_without_maps_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(AtlasError, match="'relu1' of v seed0 has no maps"):
        write_atlas("s", [_record(0)], tmp_path / "atlas")
    assert list(tmp_path.iterdir()) == []


def test_arrays_that_do_not_fit_the_table_are_refused(tmp_path: Path) -> None:
    broken = _record(2)
    broken.crops = np.zeros((1, 2, 1, 3, 3), np.uint8)
    with pytest.raises(AtlasError, match=r"2 maps in the table but \{'crops': 1\}"):
        write_atlas("s", [broken], tmp_path / "atlas")


def test_a_failed_rewrite_keeps_the_previous_atlas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "atlas"
    write_atlas("s", [_record(2)], out)

    def crash(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(site._Writer, "map_page", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        write_atlas("s", [_record(2), NetworkLayer("w", 0, "relu1", _record(2).table)], out)
    assert (out / "index.html").is_file() and "w seed0" not in (out / "index.html").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["atlas"]


def test_report_figure_of_top_maps_across_networks(tmp_path: Path) -> None:
    from atlas_study import build_study
    from cnnscope.atlas.collect import figure_rows
    from cnnscope.viz import save_figure
    from cnnscope.viz.atlas import oip_beside_exemplars
    from conftest import synthetic_prepared

    records = build_study(synthetic_prepared(), tmp_path, maps=list(range(8)))
    networks, rows, labels = figure_rows(records, "relu3", n_maps=3, n_exemplars=4)
    assert networks == ["benchmark seed0", "untrained seed0"] and len(rows) == 3
    reference = next(r for r in records if r.layer == "relu3")
    tops = reference.table[:8].sort_values("top_activation", ascending=False)["map"].iloc[:3].tolist()
    assert labels == [f"map {m}" for m in tops]
    assert all(
        cell.map == int(label.split()[1]) and cell.map < 8
        for row, label in zip(rows, labels, strict=True)
        for cell in row
    )
    assert all(cell.oip is not None for row in rows for cell in row)
    path = save_figure(oip_beside_exemplars(networks, rows, labels, "relu3: OIP beside exemplars"), tmp_path / "f.png")
    again = save_figure(oip_beside_exemplars(networks, rows, labels, "relu3: OIP beside exemplars"), tmp_path / "g.png")
    assert path.read_bytes() == again.read_bytes()
    (REPO_ARTIFACTS / "atlas_figure.png").parent.mkdir(parents=True, exist_ok=True)
    (REPO_ARTIFACTS / "atlas_figure.png").write_bytes(path.read_bytes())


def _matching_table(layer: str, pairs: dict[int, int], corr: dict[int, float], reverse: bool = False) -> pd.DataFrame:
    """The compare stage's ``matching.csv`` for networks ``A seed0`` → ``B seed0`` (or stored as B → A)."""
    rows = [
        {"layer": layer, "variant_a": "A", "seed_a": 0, "variant_b": "B", "seed_b": 0, "map_a": a, "map_b": b,
         "matched_corr": corr.get(a, 0.5), "same_index_corr": 0.1, "best_corr": 0.9, "dead_a": False, "dead_b": False}
        for a, b in pairs.items()
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    if reverse:
        swap = {"variant_a": "variant_b", "variant_b": "variant_a", "seed_a": "seed_b", "seed_b": "seed_a"}
        table = table.rename(columns={**swap, "map_a": "map_b", "map_b": "map_a"})
    return table


def _networks(layers: tuple[str, ...] = ("relu1",), n_maps: int = 8) -> list[NetworkLayer]:
    """Networks A and B whose crops say which map they belong to (crop value = map index)."""
    crops = np.arange(n_maps, dtype=np.uint8)[:, None, None, None, None] * np.ones((1, 2, 1, 3, 3), np.uint8)
    return [
        NetworkLayer(v, 0, layer, pd.DataFrame({"map": range(n_maps)}), crops=crops.copy())
        for layer in layers
        for v in ("A", "B")
    ]


@pytest.mark.parametrize("reverse", [False, True])
def test_map_page_shows_the_matched_map_of_each_other_network(tmp_path: Path, reverse: bool) -> None:
    from cnnscope.atlas.collect import MATCHING_NOTE, apply_matching

    pairs = {m: m for m in range(8)} | {3: 5, 5: 3}
    matching = _matching_table("relu1", pairs, {3: 0.87, 5: 0.61}, reverse)
    records = apply_matching(_networks(("relu1", "relu2")), matching)
    a, b = records[0], records[1]
    assert a.matches is None and b.matches == [0, 1, 2, 5, 4, 3, 6, 7]
    assert b.match_corr is not None and b.match_corr[3] == pytest.approx(0.87)
    assert records[3].matches is None  # relu2: not in the table → same index
    out = write_atlas("s", records, tmp_path / "atlas", MATCHING_NOTE)

    page = (out.parent / "maps" / "relu1" / "3.html").read_text()
    rows = re.findall(r"<tr><th><a href=[^>]*>([^<]+)</a><br>(map \d+)(.*?)</th>", page)
    assert [(name, m) for name, m, _ in rows] == [("A seed0", "map 3"), ("B seed0", "map 5")]
    assert "matched, r = 0.87" in rows[1][2] and "matched" not in rows[0][2]
    assert "Hungarian matching" in page
    # B's own layer page sends its map 5 to the page of A's map 3, and its map 3 to A's map 5
    layer = (out.parent / "layers" / "relu1--B_seed0.html").read_text()
    assert 'href="../maps/relu1/3.html">map 5</a>' in layer and 'href="../maps/relu1/5.html">map 3</a>' in layer

    same = (out.parent / "maps" / "relu2" / "3.html").read_text()
    assert re.search(r"B seed0</a><br>map 3<br><span class=\"lab\">same index</span>", same)


def test_a_table_that_does_not_cover_every_map_falls_back_to_the_same_index(tmp_path: Path) -> None:
    from cnnscope.atlas.collect import apply_matching
    from cnnscope.io import read_table

    partial = _matching_table("relu1", {0: 1, 1: 0}, {})  # 2 of 8 maps
    assert all(r.matches is None for r in apply_matching(_networks(), partial))
    other_pair = _matching_table("relu1", {m: m for m in range(8)}, {}).assign(variant_b="C")
    assert all(r.matches is None for r in apply_matching(_networks(), other_pair))
    assert read_table(Path("no/such/matching.csv")) is None
    (tmp_path / "matching.csv").write_text("")  # the compare stage matched no layer
    assert read_table(tmp_path / "matching.csv") is None


def test_figure_labels_the_matched_map_with_its_correlation() -> None:
    from cnnscope.atlas.collect import apply_matching, figure_rows

    records = _networks()
    for r in records:
        r.table["top_activation"] = np.linspace(1, 0, 8)
    matching = _matching_table("relu1", {m: m for m in range(8)} | {0: 5, 5: 0}, {0: 0.42})
    _, rows, labels = figure_rows(apply_matching(records, matching), "relu1", n_maps=1)
    assert labels == ["map 0"] and [cell.map for cell in rows[0]] == [0, 5]
    assert rows[0][0].label == "" and rows[0][1].label == "map 5, r 0.42"
    assert int(rows[0][1].crops[0].max()) == 5  # B's own map 5 crops


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist_cnn", {"pool1": "relu1", "pool2": "relu2"}),
        ("cifar_cnn", {"pool1": "relu2", "pool2": "relu4"}),
        ("edge_filters", {"pool1": "relu1", "pool2": "relu2"}),
        ("mlp", {}),
    ],
)
def test_a_pooling_layer_takes_the_matching_of_the_relu_it_pools(name: str, expected: dict[str, str]) -> None:
    model = build_model(name, in_channels=1, num_classes=10, image_size=32, mean=[0.5], std=[0.25], **knobs(name))
    assert channel_sources(model, [*model.layer_names, "nonexistent"]) == expected


def _trajectory(folder: Path, layer: str, maps: list[int], steps: list[int]) -> np.ndarray:
    """``oips.pt`` and ``maps.csv`` as the trajectory stage writes them; returns the OIPs (steps, maps, C, H, W)."""
    import torch

    from cnnscope.trajectory.run import Trajectory

    images = torch.linspace(-1, 1, len(steps) * len(maps) * 9).view(len(steps), len(maps), 1, 3, 3).half()
    rows = [{"step": s, "map": m, "top_value": 1.0, "top_class": f"class{(s + m) % 3}", "oip_objective": 0.5}
            for s in steps for m in maps]  # fmt: skip
    tensors = {"steps": steps, "layer": layer, "maps": maps, "images": images}
    Trajectory([], rows, tensors).save(folder)
    return images.float().numpy()


def test_map_page_shows_the_oip_over_training_strip_of_each_followed_map(tmp_path: Path) -> None:
    """Issue 26, item 4: a followed map's page shows its OIP at every checkpoint, labelled with the
    step and the top image's class; an unfollowed map gets one sentence linking the followed ones
    (through the matching: B's map 3 appears on the page of A's map 5); another layer gets nothing."""
    from cnnscope.atlas.collect import apply_matching, with_trajectories

    steps = [0, 1, 10, 116]
    images = _trajectory(tmp_path / "trajectory" / "A" / "seed0", "relu1", [2, 6], steps)
    _trajectory(tmp_path / "trajectory" / "B" / "seed0", "relu1", [3], steps[:1])  # B: untrained
    matching = _matching_table("relu1", {m: m for m in range(8)} | {3: 5, 5: 3}, {})
    records = with_trajectories(apply_matching(_networks(("relu1", "relu2")), matching), tmp_path / "trajectory")
    a = records[0]
    assert a.training_maps == [2, 6] and a.training_steps == steps and a.training is not None
    assert a.training.shape == (2, 4, 1, 3, 3) and np.array_equal(a.training[1, 3], images[3, 1])
    assert a.training_classes[0] == ["class2", "class0", "class0", "class1"]
    assert records[2].training is None and records[3].training is None  # relu2: not followed
    out = write_atlas("s", records, tmp_path / "atlas")
    maps = out.parent / "maps"

    page = (maps / "relu1" / "2.html").read_text()
    strip = page[page.index("OIP over training") :]
    tile = r'<span class="ck"><b class="t [^"]+" title="step (\d+), top image: (\w+)">.*?</b><br>(\d+)<br>(\w+)</span>'
    labels = re.findall(tile, strip)
    assert [(s, c) for s, c, _, _ in labels[:4]] == [
        (str(s), c) for s, c in zip(steps, a.training_classes[0], strict=True)
    ]
    assert all(s == t and c == d for s, c, t, d in labels)  # the visible labels say what the tooltips say
    assert 'src="../../sprites/relu1-0t.png"' in strip and "not followed" in page  # B's map 2 is not followed
    assert 'end of training: <a href="5.html">3</a>' in page  # B's followed map 3 sits on the page of A's map 5
    assert "one checkpoint only, step 0: this network was not trained" in (maps / "relu1" / "5.html").read_text()

    unfollowed = (maps / "relu1" / "0.html").read_text()
    assert unfollowed.count("not followed") == 2 and "follows the 2 maps most active" in unfollowed
    assert 'end of training: <a href="2.html">2</a>, <a href="6.html">6</a>' in unfollowed
    assert "OIP over training" not in (maps / "relu2" / "2.html").read_text()
    sheet = np.asarray(Image.open(out.parent / "sprites" / "relu1-0t.png"))  # rows: followed maps; columns: steps
    assert sheet.shape == (2 * 3, 4 * 3)
    assert np.array_equal(sheet[3:6, 9:12], to_uint8(images[3, 1])[..., 0])
    for page_path in maps.rglob("*.html"):  # offline: every link and image resolves inside the folder
        for link in LINK.findall(page_path.read_text()):
            assert not link.startswith(("http:", "https:", "//")) and (page_path.parent / link).resolve().is_file()


def test_oips_over_training_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    broken = _record(4)
    broken.training_maps, broken.training_steps = [1, 2], [0, 5, 9]
    broken.training = np.zeros((2, 2, 1, 3, 3), np.float32)
    broken.training_classes = [["a"] * 3] * 2
    with pytest.raises(AtlasError, match=r"hold \(2, 2\) \(maps × steps\) for 2 followed maps of 4 at 3 steps"):
        write_atlas("s", [broken], tmp_path / "atlas")
