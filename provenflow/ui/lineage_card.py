"""Lineage as markdown: the graph from ``provenflow.tracking.lineage.lineage``, upstream and downstream to
full depth, as nested lists whose every node links to its Prefect flow run, artifact or report."""

from __future__ import annotations

from collections.abc import Callable

# Where a node links to (None: no link); the caller knows the UI's address and which hashes are reports.
Linker = Callable[[dict], str | None]
MAX_NODES = 300  # an artifact stays readable (and well under Prefect's size limits)
_CHILDREN = ("produced_by", "inputs", "used_by", "outputs")


def _label(node: dict) -> str:
    if node["kind"] == "run":
        label = f"{node.get('flow') or 'run'} run {node.get('name') or node['id'][:8]}"
        state = node.get("state")
        return label + (f" ({state})" if state and state != "completed" else "")
    return f"{node['kind']} {node.get('ref') or node.get('name')}"


def _line(node: dict, link: Linker) -> str:
    label, url = escape(_label(node)), link(node)
    return f"[{label}]({url})" if url else label


def escape(text: str) -> str:
    """Text that cannot break a link or a table cell. The UI's markdown shows `code`, **bold** and
    backslash escapes inside link text literally, so those are left alone; brackets, pipes and
    angle brackets are swapped for look-alikes."""
    return text.translate(_SAFE)


_SAFE = str.maketrans({"[": "(", "]": ")", "|": "/", "<": "‹", ">": "›"})


def _walk(nodes: list[dict], link: Linker, depth: int, out: list[str], budget: list[int]) -> None:
    for node in nodes:
        if budget[0] <= 0:
            out.append("  " * depth + "- … (cut: the CLI's `provenflow lineage` shows the rest)")
            return
        budget[0] -= 1
        out.append("  " * depth + "- " + _line(node, link))
        for key in _CHILDREN:
            if node.get(key):
                _walk(node[key], link, depth + 1, out, budget)


def lineage_picture(graph: dict) -> str:
    """The graph as a markdown image (an SVG data URI): cards put it near their top, where a 1600×1000
    screen shows it without scrolling."""
    from provenflow.ui.charts import image
    from provenflow.ui.lineage_graph import lineage_svg

    return image("lineage graph", lineage_svg(graph))


def lineage_markdown(graph: dict, link: Linker, picture: bool = True) -> str:
    """``## Lineage``: the graph as a picture (unless the card shows it elsewhere), then an Upstream and
    a Downstream list whose every node links (an image cannot hold links)."""
    out = ["## Lineage", "", *([lineage_picture(graph), ""] if picture else [])]
    out += [f"This: {_line({**graph['node'], 'kind': graph['kind']}, link)}", ""]
    budget = [MAX_NODES]
    for title, key in (
        ("Upstream (what it came from)", "upstream"),
        ("Downstream (what used it)", "downstream"),
    ):
        out += [f"### {title}", ""]
        if graph.get(key):
            _walk(graph[key], link, 0, out, budget)
        else:
            out.append("_nothing recorded_")
        out.append("")
    return "\n".join(out)
