import base64
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from provenflow.data.datasets import profile_of
from provenflow.ui.charts import histogram, image, line_chart
from provenflow.ui.drift_card import feature_histogram
from provenflow.ui.publish import metric_curves


def _svg_of(markdown_image: str) -> ET.Element:
    data = re.fullmatch(r"!\[[^\]]*\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", markdown_image)
    assert data, markdown_image[:80]
    return ET.fromstring(base64.b64decode(data[1]))  # well-formed XML, or the browser shows nothing


def test_line_chart_is_a_data_uri_image_of_valid_svg():
    svg = _svg_of(image("loss", line_chart("loss", {"loss": [(0, 1.0), (1, 0.5), (2, 0.25)]})))
    line = svg.find("{http://www.w3.org/2000/svg}polyline")
    points = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
    assert len(points) == 3 and points[0][1] < points[-1][1]  # falling loss goes down (svg y grows downwards)


def test_histogram_bars_are_shares():
    svg = _svg_of(image("h", histogram("x", ["a", "b"], [1, 3], [3, 1])))
    bars = [float(r.get("height")) for r in svg.iter("{http://www.w3.org/2000/svg}rect")][
        1:
    ]  # after the background
    assert bars[0] == pytest.approx(bars[3]) and bars[1] == pytest.approx(bars[2]) and bars[1] > bars[0]
    with pytest.raises(ValueError):
        histogram("x", ["a"], [1, 2], [1])


def test_metric_curves_only_for_metrics_logged_at_steps():
    metrics = [("loss", 1.0, 0), ("loss", 0.5, 1), ("accuracy", 0.9, None), ("once", 1.0, 3)]
    curves = metric_curves(metrics)
    assert len(curves) == 1 and curves[0].startswith("![loss over steps]")


def test_feature_histograms_from_the_stored_profile():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(0, 1, 1000), "c": rng.choice(["a", "b"], 1000)})
    profile = profile_of(train)["columns"]
    same = _svg_of(feature_histogram("x", profile["x"], train["x"]))
    shifted = _svg_of(feature_histogram("x", profile["x"], train["x"] + 3))

    def heights(svg):
        return [float(r.get("height")) for r in svg.iter("{http://www.w3.org/2000/svg}rect")][1:]

    ref_same, cur_same = heights(same)[0::2], heights(same)[1::2]
    assert ref_same == pytest.approx(cur_same)  # the same data draws the same bars
    assert heights(shifted)[1::2] != pytest.approx(ref_same)
    categorical = _svg_of(feature_histogram("c", profile["c"], pd.Series(["a"] * 10)))
    assert "(other)" in ET.tostring(categorical, encoding="unicode")
