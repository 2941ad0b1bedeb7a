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
