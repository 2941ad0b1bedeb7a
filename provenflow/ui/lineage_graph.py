"""The lineage as a picture: a small left-to-right graph (data → run → model → release → deployment →
drift check → retrain) drawn as SVG for a markdown image.

The Prefect UI strips raw ``<svg>`` from markdown but shows a data-URI image (``charts.image``); an
image cannot hold links, so the card keeps the linked list under it. Columns are the distance from the
node the card is about (upstream to the left, downstream to the right); each column stacks its nodes.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

MAX_NODES = 40  # a picture of more than this stops being readable; the list below has them all
COLUMN, ROW, BOX_W, BOX_H, MARGIN = 178, 44, 158, 34, 12
COLOURS = {
    "dataset": "#e3effb",
    "run": "#fff1d6",
    "model": "#e2f5e6",
    "release": "#efe3fb",
    "deployment": "#fde3e3",
}
_CHILDREN_UP = ("produced_by", "inputs")
_CHILDREN_DOWN = ("used_by", "outputs")


@dataclass
class _Graph:
    nodes: dict[tuple, tuple[int, str, str, str]] = field(
        default_factory=dict
    )  # key → column, kind, text, tip
    edges: list[tuple[tuple, tuple]] = field(default_factory=list)
    cut: int = 0

    def add(self, key: tuple, column: int, kind: str, text: str, tip: str) -> bool:
        if key in self.nodes:
            return True
        if len(self.nodes) >= MAX_NODES:
            self.cut += 1
            return False
        self.nodes[key] = (column, kind, text, tip)
        return True


def _describe(node: dict) -> tuple[tuple, str, str, str]:
    """Key, kind, the short text in the box, the full text in its tooltip."""
    kind = node.get("kind", "?")
    if kind == "run":
        flow = node.get("flow") or "run"
        name = node.get("name") or node["id"][:8]
        state = node.get("state")
        tip = f"{flow} run {name}" + (f" ({state})" if state and state != "completed" else "")
        return ("run", node["id"]), f"{flow}", name, tip
    ref = str(node.get("ref") or node.get("name") or "?")
    # A file's or suite's full path would be cut to its first folders: the box shows its file name.
    shown = ref.replace("\\", "/").rsplit("/", 1)[-1] or ref if kind in ("file", "suite") else ref
    # Keyed by content too: two checks' "drift-report.html" are two reports, not one box.
    return (kind, ref, node.get("hash")), kind, shown, f"{kind} {ref}"


def _walk(graph: _Graph, node: dict, column: int, step: int, children: tuple[str, ...]) -> None:
    key = _describe(node)[0]
    for name in children:
        for child in node.get(name) or []:
            child_key, child_kind, child_text, child_tip = _describe(child)
            if not graph.add(child_key, column + step, child_kind, child_text, child_tip):
                continue
            graph.edges.append((child_key, key) if step < 0 else (key, child_key))
            _walk(graph, child, column + step, step, children)


def _releases(graph: _Graph, node: dict, key: tuple, column: int) -> None:
    """A model's releases (image) and deployments, to its right."""
    images = {}
    for r in node.get("releases") or []:
        image = str(r.get("image") or "?")
        release = ("release", image)
        if graph.add(release, column + 1, "release", image.rsplit("/", 1)[-1], f"release {image}"):
            graph.edges.append((key, release))
            images[image] = release
    for d in node.get("deployments") or []:
        name = f"{d.get('target')} {d.get('name')}"
        deployment = ("deployment", name)
        tip = f"deployment {name}: {d.get('state')}" + (f" at {d['endpoint']}" if d.get("endpoint") else "")
        source = images.get(str(d.get("image")), key)
        column_of = graph.nodes[source][0] + 1
        if graph.add(deployment, column_of, "deployment", name, tip):
            graph.edges.append((source, deployment))


def lineage_svg(lineage: dict) -> str:
    """The picture of a ``provenflow.tracking.lineage.lineage`` graph, the node itself outlined."""
    graph = _Graph()
    focus = {**lineage["node"], "kind": lineage["kind"]}
    key, kind, text, tip = _describe(focus)
    graph.add(key, 0, kind, text, tip)
    _walk(graph, {**focus, "inputs": lineage.get("upstream") or []} if kind == "run" else
          {**focus, "produced_by": lineage.get("upstream") or []}, 0, -1, _CHILDREN_UP)  # fmt: skip
    if kind == "model":
        _releases(graph, focus, key, 0)
    _walk(graph, {**focus, "outputs": lineage.get("downstream") or []} if kind == "run" else
          {**focus, "used_by": lineage.get("downstream") or []}, 0, 1, _CHILDREN_DOWN)  # fmt: skip
    return _draw(graph, key)


def _draw(graph: _Graph, focus: tuple) -> str:
    columns = sorted({c for c, *_ in graph.nodes.values()})
    first = columns[0]
    stacks: dict[int, list[tuple]] = {}
    for k, (c, *_) in graph.nodes.items():
        stacks.setdefault(c, []).append(k)
    tallest = max(len(v) for v in stacks.values())
    width = MARGIN * 2 + (columns[-1] - first) * COLUMN + BOX_W
    height = MARGIN * 2 + tallest * ROW + (16 if graph.cut else 0)
    where = {}
    for c, keys in stacks.items():
        top = MARGIN + (tallest - len(keys)) * ROW / 2  # centred in its column
        for i, k in enumerate(keys):
            where[k] = (MARGIN + (c - first) * COLUMN, top + i * ROW)
    body = []
    for a, b in graph.edges:
        (x1, y1), (x2, y2) = where[a], where[b]
        x1, y1, x2, y2 = x1 + BOX_W, y1 + BOX_H / 2, x2, y2 + BOX_H / 2
        middle = (x1 + x2) / 2
        body.append(
            f'<path d="M{x1:.0f},{y1:.0f} C{middle:.0f},{y1:.0f} {middle:.0f},{y2:.0f} {x2:.0f},{y2:.0f}" '
            'fill="none" stroke="#8a8a8a" stroke-width="1.2" marker-end="url(#arrow)"/>'
        )
    for k, (_, kind, text, tip) in graph.nodes.items():
        x, y = where[k]
        stroke = 'stroke="#222" stroke-width="2"' if k == focus else 'stroke="#9a9a9a"'
        shown = text if len(text) <= 24 else text[:23] + "…"
        body.append(
            f'<g><title>{html.escape(tip)}</title><rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" '
            f'rx="5" fill="{COLOURS.get(k[0], "#f2f2f2")}" {stroke}/>'
            f'<text x="{x + 7:.0f}" y="{y + 13:.0f}" font-size="10" fill="#555">{html.escape(kind)}</text>'
            f'<text x="{x + 7:.0f}" y="{y + 27:.0f}" font-size="12">{html.escape(shown)}</text></g>'
        )
    if graph.cut:
        body.append(
            f'<text x="{MARGIN}" y="{height - 6}" font-size="11" fill="#555">'
            f"… and {graph.cut} more (listed below)</text>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif">'
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#8a8a8a"/></marker></defs>'
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>' + "".join(body) + "</svg>"
    )
