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
from cnnscope.atlas.sprites import to_uint8, write_sheet

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
