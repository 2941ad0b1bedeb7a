from provenflow.ui.lineage_card import lineage_markdown


def _run(i, **children):
    return {"kind": "run", "id": f"r{i}", "name": f"run-{i}", "flow": "model-run", "state": "completed",
            "prefect_url": f"http://ui/flow-runs/flow-run/r{i}", **children}  # fmt: skip


def test_full_depth_each_node_linked():
    graph = {
        "ref": "m@2", "kind": "model", "node": {"kind": "model", "ref": "m@2", "hash": "h"},
        "upstream": [_run(1, inputs=[{"kind": "dataset", "ref": "d@1", "hash": "d",
                                      "produced_by": [_run(0, inputs=[{"kind": "file", "ref": "raw.csv", "hash": "f"}])]}])],
        "downstream": [_run(2, outputs=[{"kind": "file", "ref": "drift-report.html", "hash": "rep"}])],
    }  # fmt: skip

    def link(node):
        if node["kind"] == "run":
            return node["prefect_url"]
        return (
            {"model": "http://ui/artifacts/key/model-m", "file": None}.get(node["kind"], "http://ui/x")
            if node["hash"] != "rep"
            else "http://reports/rep.html"
        )

    md = lineage_markdown(graph, link)
    assert "This: [model m@2](http://ui/artifacts/key/model-m)" in md
    lines = md.splitlines()
    up = lines.index("### Upstream (what it came from)")
    # Depth shows as indentation: run 1 → its dataset → run 0 that wrote it → the raw file.
    assert lines[up + 2] == "- [model-run run run-1](http://ui/flow-runs/flow-run/r1)"
    assert lines[up + 3] == "  - [dataset d@1](http://ui/x)"
    assert lines[up + 4] == "    - [model-run run run-0](http://ui/flow-runs/flow-run/r0)"
    assert lines[up + 5] == "      - file raw.csv"
    assert "  - [file drift-report.html](http://reports/rep.html)" in lines


def test_nothing_recorded_and_cut_when_huge():
    md = lineage_markdown({"ref": "r", "kind": "run", "node": {"id": "r", "name": "x"}, "upstream": [], "downstream": []},
                          lambda n: None)  # fmt: skip
    assert md.count("_nothing recorded_") == 2
    many = [_run(i) for i in range(400)]
    md = lineage_markdown(
        {"ref": "r", "kind": "run", "node": {"id": "r"}, "upstream": many, "downstream": []}, lambda n: None
    )
    assert "… (cut" in md and md.count("model-run run") == 300
    # Markdown in names is shown as text, not interpreted.
    odd = lineage_markdown({"ref": "r", "kind": "run", "node": {"kind": "run", "id": "r", "name": "a_*b*_[x]"},
                            "upstream": [], "downstream": []}, lambda n: "http://u")  # fmt: skip
    assert "This: [run run a_*b*_(x)](http://u)" in odd  # brackets cannot end the link early


def _svg_of(md: str) -> str:
    import base64
    import re

    found = re.search(r"!\[lineage graph\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", md)
    assert found, "no lineage picture in the card"
    return base64.b64decode(found.group(1)).decode()


def test_the_card_draws_the_lineage_data_run_model_release_deployment_drift_retrain():
    """Before, the lineage was nested lists only."""
    import re

    graph = {
        "ref": "m@2", "kind": "model",
        "node": {"kind": "model", "ref": "m@2", "hash": "h",
                 "releases": [{"image": "registry/m:2", "digest": "sha256:x"}],
                 "deployments": [{"target": "local", "name": "m-2", "state": "running", "image": "registry/m:2",
                                  "endpoint": "http://127.0.0.1:9"}]},
        "upstream": [_run(1, inputs=[{"kind": "dataset", "ref": "penguins@99d47d", "hash": "d",
                                      "produced_by": [{**_run(0), "flow": "data-run",
                                                       "inputs": [{"kind": "file", "ref": "/tmp/a/b/penguins.csv", "hash": "f"}]}]}])],
        "downstream": [{**_run(2), "flow": "drift-monitor", "outputs": [{"kind": "file", "ref": "drift-report.html", "hash": "rep"}]},
                       {**_run(3), "flow": "retrain", "outputs": [{"kind": "model", "ref": "m@3", "hash": "h3"}]}],
    }  # fmt: skip
    md = lineage_markdown(graph, lambda n: "http://ui/x")
    lines = md.splitlines()
    assert lines[2].startswith("![lineage graph](data:image/svg+xml;base64,")  # the picture first
    assert "This: [model m@2](http://ui/x)" in md  # and every node still a link below it
    svg = _svg_of(md)
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    for shown in ("penguins.csv", "data-run", "penguins@99d47d", "model-run", "m@2", "m:2", "local m-2", "drift-monitor",
                  "drift-report.html", "retrain", "m@3"):  # fmt: skip
        assert shown in texts, shown
    x = {t: float(v) for v, t in re.findall(r'<text x="([\d.]+)"[^>]*font-size="12">([^<]*)</text>', svg)}
    # Left to right: data → run → model → release → deployment; the model's users to its right.
    assert x["penguins@99d47d"] < x["run-1"] < x["m@2"] < x["m:2"] < x["local m-2"]
    assert x["m@2"] < x["run-2"] < x["drift-report.html"] and x["run-3"] < x["m@3"]
    assert svg.count("marker-end=") == 10 and 'stroke-width="2"' in svg  # 10 edges; the model outlined


def test_a_huge_lineage_picture_stays_small():
    many = [_run(i) for i in range(400)]
    md = lineage_markdown({"ref": "r", "kind": "run", "node": {"id": "r"}, "upstream": many, "downstream": []},
                          lambda n: None)  # fmt: skip
    svg = _svg_of(md)
    assert svg.count("<rect") <= 41 and "more (listed below)" in svg
