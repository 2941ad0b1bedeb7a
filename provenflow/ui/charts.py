"""Small SVG charts for markdown artifacts: metric curves over steps, reference vs. current histograms.

The Prefect UI renders a markdown image given as a data URI (``![x](data:image/svg+xml;base64,…)``)
but strips raw ``<svg>`` tags, so each chart is returned as a markdown image line. Drawn by hand:
a few dozen shapes do not need matplotlib (and its ~1 s import).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

WIDTH, HEIGHT, PAD = 420, 200, 34
REFERENCE, CURRENT = "#8aa4c8", "#e07b39"
_PALETTE = ("#1f77b4", "#e07b39", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def image(alt: str, svg: str) -> str:
    """A markdown image of an SVG, as a data URI."""
    data = base64.b64encode(svg.encode()).decode()
    return f"![{alt.replace(']', ')')}](data:image/svg+xml;base64,{data})"


def _svg(body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>'
        f'<text x="{PAD}" y="14" font-weight="bold">{html.escape(title)}</text>' + "".join(body) + "</svg>"
    )


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def line_chart(title: str, series: dict[str, Sequence[tuple[float, float]]]) -> str:
    """One line per series of (step, value) points, on shared axes, with a legend."""
    points = [p for s in series.values() for p in s]
    if not points:
        raise ValueError("a line chart needs at least one point")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    w, h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def at(x: float, y: float) -> str:
        return f"{PAD + (x - x0) / (x1 - x0) * w:.1f},{HEIGHT - PAD - (y - y0) / (y1 - y0) * h:.1f}"

    body = _axes(_fmt(y0), _fmt(y1), _fmt(x0), _fmt(x1), "step")
    for i, (name, pts) in enumerate(series.items()):
        color = _PALETTE[i % len(_PALETTE)]
        ordered = sorted(pts)
        body.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{" ".join(at(x, y) for x, y in ordered)}"/>'
        )
        body.append(
            f'<text x="{WIDTH - PAD - 110}" y="{PAD + 12 * i}" fill="{color}">{html.escape(name)}</text>'
        )
    return _svg(body, title)


def histogram(title: str, labels: Sequence[str], reference: Sequence[float], current: Sequence[float]) -> str:
    """Side-by-side bars per bin: the reference's share of rows and the current window's."""
    if not labels or len(labels) != len(reference) or len(labels) != len(current):
        raise ValueError("a histogram needs as many reference and current values as labels")
    ref, cur = _shares(reference), _shares(current)
    top = max([*ref, *cur, 1e-9])
    w, h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    slot = w / len(labels)
    bar = max(slot * 0.4, 0.5)
    few = len(labels) <= 8  # categories: name every bar; numeric bins: the range's two ends
    body = _axes("0", f"{top:.0%}", "" if few else str(labels[0]), "" if few else str(labels[-1]), "")
    for i in range(len(labels)):
        for j, (share, color) in enumerate(((ref[i], REFERENCE), (cur[i], CURRENT))):
            height = share / top * h
            x = PAD + i * slot + slot * 0.1 + j * bar
            body.append(
                f'<rect x="{x:.1f}" y="{HEIGHT - PAD - height:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{color}"><title>{html.escape(str(labels[i]))}: {share:.1%}</title></rect>'
            )
        if few:
            body.append(
                f'<text x="{PAD + (i + 0.5) * slot:.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle">'
                f"{html.escape(str(labels[i])[:12])}</text>"
            )
    body.append(f'<text x="{WIDTH - PAD - 130}" y="{PAD}" fill="{REFERENCE}">■ reference (training)</text>')
    body.append(f'<text x="{WIDTH - PAD - 130}" y="{PAD + 13}" fill="{CURRENT}">■ current window</text>')
    return _svg(body, title)


def _shares(values: Sequence[float]) -> list[float]:
    total = float(sum(values))
    return [float(v) / total if total else 0.0 for v in values]


def _axes(y0: str, y1: str, x0: str, x1: str, xlabel: str) -> list[str]:
    bottom, right = HEIGHT - PAD, WIDTH - PAD
    return [
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{bottom}" stroke="#999"/>',
        f'<line x1="{PAD}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>',
        f'<text x="{PAD - 4}" y="{bottom}" text-anchor="end">{html.escape(y0)}</text>',
        f'<text x="{PAD - 4}" y="{PAD + 8}" text-anchor="end">{html.escape(y1)}</text>',
        f'<text x="{PAD}" y="{bottom + 14}">{html.escape(x0)}</text>',
        f'<text x="{right}" y="{bottom + 14}" text-anchor="end">{html.escape(x1)}</text>',
        f'<text x="{WIDTH / 2}" y="{bottom + 14}" text-anchor="middle">{html.escape(xlabel)}</text>',
    ]
