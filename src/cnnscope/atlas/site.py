"""The unit atlas: a static HTML site per study that shows every map's OIP beside the real images
that drive it, across variants and seeds.

Reading an OIP needs the dataset exemplars beside it (Olah et al., Distill 2017; Borowski et al.,
ICLR 2021) and a check against them (Geirhos et al., ICML 2024); OpenAI Microscope offered such
pages for a fixed set of ImageNet models. This module writes them for the study's own networks:

* ``index.html`` — layers × networks (variant, seed), each cell a summary linking to a layer page;
* ``layers/<layer>--<network>.html`` — every map of the layer in one network: OIP, top and median
  exemplars' receptive-field crops, sparsity, mean activation, silent flags, robustness,
  normalised OIP activation, path check;
* ``maps/<layer>/<map>.html`` — one map across all networks side by side (the matched map of each
  network, see :attr:`NetworkLayer.matches`), with evolution and wavelength strips and the
  per-node OIPs where the OIP stage computed them, and — for the maps the trajectory stage followed —
  the "OIP over training" strip: the map's OIP at every checkpoint, each labelled with its gradient
  step and the class of the map's top image there.

Pages use relative links and a few sprite sheets (:mod:`cnnscope.atlas.sprites`), no scripts and
nothing from the network, so the folder works from ``file://`` and can be copied anywhere. The
whole folder is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cnnscope.atlas.layer import AtlasError, NetworkLayer
from cnnscope.atlas.page import CSS, LEGEND, SCALE_CROP, SCALE_OIP, STATS, fmt, html_page, slug
from cnnscope.atlas.sprites import Sheet, write_sheet
from cnnscope.io import atomic_dir
from cnnscope.viz import save_figure

#: The OIP-beside-exemplars figure in the atlas folder (embedded in ``overview.html``; the report copies it).
FIGURE_FILE = "overview.png"


def _preview_scale(sheet: Sheet) -> int:
    """Small crops are drawn larger in the index's preview, so every preview tile is ~28 px."""
    return max(1, 28 // sheet.tile_height)


@dataclass
class _Sheets:
    exemplars: Sheet | None = None
    oips: Sheet | None = None
    nodes: Sheet | None = None
    training: Sheet | None = None


class _Writer:
    def __init__(self, study: str, networks: Sequence[NetworkLayer], root: Path, note: str) -> None:
        self.study, self.root, self.note = study, root, note
        self.layers = list(dict.fromkeys(n.layer for n in networks))
        self.names = list(dict.fromkeys(n.name for n in networks))
        self.by_key = {(n.layer, n.name): n for n in networks}
        self.sheets: dict[tuple[str, str], _Sheets] = {}

    # ---- sprites -------------------------------------------------------------------------
    def write_sprites(self) -> None:
        for (layer, name), net in self.by_key.items():
            stem = f"sprites/{slug(layer)}-{self.names.index(name)}"  # short: every tile names its sheet
            sheets = _Sheets()
            crops = [a for a in (net.crops, net.median_crops) if a is not None]
            if crops:
                sheets.exemplars = write_sheet(np.concatenate(crops, axis=1), self.root, f"{stem}e.png")
            if net.oips is not None:
                parts = [net.oips[:, None]] + [a for a in (net.evolution, net.starts) if a is not None]
                sheets.oips = write_sheet(np.concatenate(parts, axis=1), self.root, f"{stem}o.png")
            if net.nodes is not None:
                sheets.nodes = write_sheet(net.nodes[1], self.root, f"{stem}n.png")
            if net.training is not None:
                sheets.training = write_sheet(net.training, self.root, f"{stem}t.png")
            self.sheets[(layer, name)] = sheets

    def sheet_css(self) -> str:
        """Tile rules of every sheet at every scale a page draws it (1, 2 and the preview's)."""
        rules = []
        for sheets in self.sheets.values():
            for sheet in (sheets.exemplars, sheets.oips, sheets.nodes, sheets.training):
                if sheet is not None:
                    scales = sorted({1, SCALE_OIP, SCALE_CROP, _preview_scale(sheet)})
                    rules += [sheet.css(scale) for scale in scales]
        return "".join(rules)

    # ---- pieces --------------------------------------------------------------------------
    def reference_index(self, net: NetworkLayer, m: int) -> int:
        """The map page (reference map index) on which map ``m`` of ``net`` appears."""
        if net.matches is None:
            return m
        return net.matches.index(m) if m in net.matches else m

    def matched(self, net: NetworkLayer, ref: int) -> int:
        return ref if net.matches is None else int(net.matches[ref])

    def match_label(self, net: NetworkLayer, ref: int) -> str:
        """How map ``ref`` of the reference network was paired with ``net``'s map on a map page."""
        if net.name == next(n for n in self.names if (net.layer, n) in self.by_key):
            return ""  # the reference network of the layer
        if net.match_corr is None:
            return '<br><span class="lab">same index</span>'
        via = f" via {net.match_via}" if net.match_via else ""
        return f'<br><span class="lab">matched{via}, r = {net.match_corr[ref]:.2f}</span>'

    def oip_tile(self, net: NetworkLayer, m: int, prefix: str) -> str:
        sheet = self.sheets[(net.layer, net.name)].oips
        return "" if sheet is None or not net.has_oip(m) else sheet.tile(m, 0, SCALE_OIP, prefix)

    def training_strip(self, net: NetworkLayer, m: int, prefix: str) -> str:
        """The "OIP over training" strip of map ``m``: its OIP at every checkpoint the trajectory stage
        kept, each tile labelled with the gradient step and the class of the map's top image there; for
        a map it did not follow, one sentence naming (and linking) the ones it did; nothing for a
        layer without a trajectory."""
        sheet = self.sheets[(net.layer, net.name)].training
        if sheet is None or not net.training_maps:
            return ""
        if m not in net.training_maps:
            links = ", ".join(
                f'<a href="{self.reference_index(net, t)}.html">{t}</a>' for t in sorted(net.training_maps)
            )
            return (
                f'<div class="lab">OIP over training: not followed (the trajectory stage follows the '
                f"{len(net.training_maps)} maps most active at the end of training: {links}).</div>"
            )
        row = net.training_maps.index(m)
        spacer = f'<b style="display:inline-block;height:{sheet.tile_height * SCALE_OIP}px"></b>'
        legend = f'<span class="ck" style="text-align:right">{spacer}<br>step<br>top class</span>'
        tiles = "".join(
            f'<span class="ck">{sheet.tile(row, j, SCALE_OIP, prefix, f"step {step}, top image: {cls}")}'
            f"<br>{step}<br>{html.escape(cls)}</span>"
            for j, (step, cls) in enumerate(zip(net.training_steps, net.training_classes[row], strict=True))
        )
        head = (
            "the same noise at every checkpoint; under each tile its gradient step and the class of the map's top "
            "image there"
        )
        if len(net.training_steps) == 1:  # the untrained network: its start is its end
            head = f"one checkpoint only, step {net.training_steps[0]}: this network was not trained"
        return f'<div class="lab">OIP over training ({head}):</div><div class="strip">{legend}{tiles}</div>'

    def exemplar_tiles(self, net: NetworkLayer, m: int, prefix: str) -> str:
        sheet = self.sheets[(net.layer, net.name)].exemplars
        if sheet is None:
            return ""
        k = 0 if net.crops is None else net.crops.shape[1]
        top = "".join(sheet.tile(m, j, SCALE_CROP, prefix) for j in range(k))
        median = "".join(sheet.tile(m, j, SCALE_CROP, prefix) for j in range(k, sheet.cols))
        sep = ' <span class="lab">median:</span> ' if median else ""
        return f'<div class="strip">{top}{sep}{median}</div>'

    def preview(self, net: NetworkLayer, count: int = 6) -> str:
        """The first maps' OIPs (or top exemplar crops where there are no OIPs), for the index."""
        sheets = self.sheets[(net.layer, net.name)]
        shown = range(min(count, net.n_maps))
        sheet = sheets.oips if sheets.oips is not None and all(net.has_oip(m) for m in shown) else sheets.exemplars
        if sheet is None:
            return ""
        scale = _preview_scale(sheet)
        return "".join(sheet.tile(m, 0, scale) for m in shown)

    def stat_header(self, net: NetworkLayer) -> str:
        """Header cells of the numbers :meth:`stat_cells` gives (one column per number)."""
        cells = [f"<th>{label}</th>" for col, label, _ in STATS if col in net.table]
        paths = [c.removeprefix("path_oip_") for c in net.table.columns if c.startswith("path_oip_")]
        if paths:
            cells.append(f"<th>path ({', '.join(paths)})</th>")
        return "".join(cells)

    def stat_cells(self, net: NetworkLayer, m: int) -> str:
        row = net.table.iloc[m]
        cells = [f"<td>{fmt(row[col], kind)}</td>" for col, _, kind in STATS if col in row]
        paths = [c.removeprefix("path_oip_") for c in net.table.columns if c.startswith("path_oip_")]
        if paths:
            pairs = [f"{fmt(row[f'path_oip_{p}'], 'num')}/{fmt(row[f'path_natural_{p}'], 'num')}" for p in paths]
            cells.append(f"<td>{' · '.join(pairs)}</td>")
        return "".join(cells)

    # ---- pages ---------------------------------------------------------------------------
    def summary_table(self, links: bool = True) -> str:
        """Layers × networks, each cell a summary (and, with ``links``, a link and a preview)."""
        head = "".join(f"<th>{html.escape(n)}</th>" for n in self.names)
        rows = []
        for layer in self.layers:
            cells = []
            for name in self.names:
                net = self.by_key.get((layer, name))
                if net is None:
                    cells.append("<td>–</td>")
                    continue
                summary = [f"{net.n_maps} maps"]
                for col, label in (("silent_on_data", "silent on data"), ("flagged", "flagged")):
                    if col in net.table:
                        summary.append(f"{int(net.table[col].fillna(False).astype(bool).sum())} {label}")
                if "normalised_activation" in net.table:
                    summary.append(f"median OIP÷top {fmt(float(net.table['normalised_activation'].median()), 'num')}")
                if links:
                    href = f"layers/{slug(layer)}--{slug(name)}.html"
                    summary.insert(0, f'<a href="{href}">{html.escape(layer)}</a>')
                    summary.append(f'<div class="strip">{self.preview(net)}</div>')
                cells.append(f"<td>{'<br>'.join(summary)}</td>")
            rows.append(f"<tr><th>{html.escape(layer)}</th>{''.join(cells)}</tr>")
        return f"<table><tr><th>layer</th>{head}</tr>{''.join(rows)}</table>"

    def index(self) -> None:
        body = (
            f"<h1>Unit atlas: study {html.escape(self.study)}</h1><p>{self.note}</p>{self.summary_table()}"
            '<p><a href="overview.html">self-contained overview</a> (the page to open inside MLflow)</p>'
        )
        (self.root / "index.html").write_text(html_page(f"atlas {self.study}", body, ""))

    def overview(self, figure_png: bytes) -> None:
        """``overview.html``: no links, no files — styles inline and the figure as a ``data:`` URI,
        because MLflow's artefact view resolves neither relative links nor images."""
        image = base64.b64encode(figure_png).decode("ascii")
        figure = f'<p><img alt="OIP beside exemplars" src="data:image/png;base64,{image}"></p>' if image else ""
        body = (
            f"<h1>Unit atlas: study {html.escape(self.study)} (overview)</h1>"
            "<p>The full atlas (a page per layer and per map) is the folder this file is in: open its "
            f"<code>index.html</code> from disk.</p><p>{self.note}</p>{self.summary_table(links=False)}"
            f"{figure}"
        )
        page = html_page(f"atlas {self.study} overview", body, "").replace(
            '<link rel="stylesheet" href="style.css">', f"<style>{CSS}</style>"
        )
        (self.root / "overview.html").write_text(page)

    def layer_page(self, net: NetworkLayer) -> None:
        prefix = "../"
        rows = []
        for m in range(net.n_maps):
            ref = self.reference_index(net, m)
            flagged = "flagged" in net.table and bool(net.table["flagged"].iloc[m])
            mark = ' class="flag"' if flagged else ""
            rows.append(
                f'<tr{mark}><th><a href="../maps/{slug(net.layer)}/{ref}.html">'
                f"map {m}</a></th><td>{self.oip_tile(net, m, prefix)}</td>"
                f"<td>{self.exemplar_tiles(net, m, prefix)}</td>{self.stat_cells(net, m)}</tr>"
            )
        others = " · ".join(
            f'<a href="{slug(net.layer)}--{slug(name)}.html">{html.escape(name)}</a>'
            for name in self.names
            if (net.layer, name) in self.by_key
        )
        body = (
            f'<p><a href="../index.html">atlas index</a> · {others}</p>'
            f"<h1>{html.escape(net.layer)} — {html.escape(net.name)}</h1>"
            "<p>Per map: OIP (if computed), the top exemplars' receptive-field crops, images at the "
            "median activation, and the map's numbers. Red rows: flagged.</p>"
            f"<table><tr><th>map</th><th>OIP</th><th>top exemplars · median</th>{self.stat_header(net)}</tr>"
            f"{''.join(rows)}</table>{LEGEND}"
        )
        path = self.root / "layers" / f"{slug(net.layer)}--{slug(net.name)}.html"
        path.write_text(html_page(f"{net.layer} {net.name}", body, prefix))

    def map_page(self, layer: str, ref: int, count: int) -> None:
        prefix = "../../"
        rows, header = [], ""
        for name in self.names:
            net = self.by_key.get((layer, name))
            if net is None or ref >= net.n_maps:
                continue
            m = self.matched(net, ref)
            sheets = self.sheets[(layer, name)]
            strips = ""
            if sheets.oips is not None and net.has_oip(m):
                evo = 0 if net.evolution is None else net.evolution.shape[1]
                evolution = "".join(
                    sheets.oips.tile(m, 1 + j, SCALE_OIP, prefix, f"step {s}")
                    for j, s in enumerate(net.evolution_steps[:evo])
                )
                starts = "".join(
                    sheets.oips.tile(m, 1 + evo + j, SCALE_OIP, prefix, label)
                    for j, label in enumerate(net.start_labels)
                )
                strips = (
                    f'<div class="strip"><span class="lab">evolution (steps {net.evolution_steps[:evo]}):</span> '
                    f'{evolution}</div><div class="strip"><span class="lab">every start:</span> {starts}</div>'
                )
            nodes = ""
            if net.nodes is not None and net.nodes[0] == m and sheets.nodes is not None:
                grid = "<br>".join(
                    "".join(sheets.nodes.tile(y, x, 1, prefix) for x in range(sheets.nodes.cols))
                    for y in range(sheets.nodes.rows)
                )
                nodes = f'<div><span class="lab">one OIP per node:</span><br>{grid}</div>'
            layer_href = f"../../layers/{slug(layer)}--{slug(name)}.html"
            rows.append(
                f'<tr><th><a href="{layer_href}">{html.escape(name)}</a><br>map {m}{self.match_label(net, ref)}</th>'
                f"<td>{self.oip_tile(net, m, prefix)}</td><td>{strips}{nodes}{self.training_strip(net, m, prefix)}</td>"
                f"<td>{self.exemplar_tiles(net, m, prefix)}</td>{self.stat_cells(net, m)}</tr>"
            )
            header = self.stat_header(net)
        nav = [f'<a href="{prefix}index.html">atlas index</a>']
        if ref > 0:
            nav.append(f'<a href="{ref - 1}.html">previous map</a>')
        if ref + 1 < count:
            nav.append(f'<a href="{ref + 1}.html">next map</a>')
        body = (
            f"<p>{' · '.join(nav)}</p><h1>{html.escape(layer)} map {ref} across networks</h1>"
            f"<p>{self.note}</p><table><tr><th>network</th><th>OIP</th><th>OIP strips</th>"
            f"<th>top exemplars · median</th>{header}</tr>{''.join(rows)}</table>{LEGEND}"
        )
        (self.root / "maps" / slug(layer) / f"{ref}.html").write_text(html_page(f"{layer} map {ref}", body, prefix))


def write_atlas(
    study: str,
    networks: Sequence[NetworkLayer],
    out_dir: str | Path,
    note: str = "",
    figure: Figure | None = None,
) -> Path:
    """Write the atlas of ``networks`` to ``out_dir`` (replaced as a whole); returns ``index.html``.

    ``note`` says how maps are matched across networks (shown on the index and map pages);
    ``figure`` (e.g. :func:`cnnscope.viz.atlas.oip_beside_exemplars`) goes into ``overview.html``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AtlasError(f"the atlas folder {out} exists and is a file: remove it or set another output folder")
    if not networks:
        raise AtlasError("no networks to show: the atlas needs at least one variant's exemplars")
    for net in networks:
        if net.n_maps == 0:
            raise AtlasError(f"layer {net.layer!r} of {net.name} has no maps; choose layers with feature maps")
        arrays = {"crops": net.crops, "median_crops": net.median_crops, "oips": net.oips}
        arrays |= {"evolution": net.evolution, "starts": net.starts}
        wrong = {key: len(a) for key, a in arrays.items() if a is not None and len(a) != net.n_maps}
        if wrong:
            raise AtlasError(f"{net.layer} of {net.name}: {net.n_maps} maps in the table but {wrong}")
        if net.training is not None:
            shape = (len(net.training_maps), len(net.training_steps))
            classes = (len(net.training_classes), *{len(c) for c in net.training_classes})
            if (
                net.training.shape[:2] != shape
                or classes != shape
                or not all(0 <= t < net.n_maps for t in net.training_maps)
            ):
                raise AtlasError(
                    f"{net.layer} of {net.name}: the OIPs over training hold {net.training.shape[:2]} (maps × steps) "
                    f"for {shape[0]} followed maps of {net.n_maps} at {shape[1]} steps, with classes {classes}"
                )
    with atomic_dir(out) as tmp:
        writer = _Writer(study, networks, tmp, note)
        for sub in ("layers", "maps", "sprites"):
            (tmp / sub).mkdir()
        writer.write_sprites()
        (tmp / "style.css").write_text(CSS.lstrip() + writer.sheet_css())
        writer.index()
        png = b""
        if figure is not None:
            png = save_figure(figure, tmp / FIGURE_FILE).read_bytes()
        writer.overview(png)
        for net in networks:
            writer.layer_page(net)
        for layer in writer.layers:
            (tmp / "maps" / slug(layer)).mkdir()
            count = max(n.n_maps for n in networks if n.layer == layer)
            for ref in range(count):
                writer.map_page(layer, ref, count)
    return out / "index.html"


def folder_size(path: str | Path) -> tuple[int, int]:
    """Total bytes and number of files under ``path`` (the README states the default atlas's size)."""
    files = [p for p in Path(path).rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)
