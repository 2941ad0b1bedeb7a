"""Prometheus metrics of one model server process (``GET /metrics``, prometheus-client's text format).

Series (all prefixed ``provenflow_``):

    model_info{name,version,hash,runtime}          1, for joins and dashboard titles
    requests_total{endpoint,status}                answered requests by HTTP status (errors are status >= 400)
    request_duration_seconds{endpoint}             histogram, from the handler's start to the response built
    rows_predicted_total                           rows answered with a prediction
    predictions_total{class}                       classifiers: predicted rows per class
    prediction_value                               regressors: histogram of predicted values (buckets only)
    prediction_values_sum                          regressors: their sum (mean = sum / rows_predicted_total)
    prediction_log_buffered_rows                   rows in write-ahead files not yet in a segment (backlog)
    prediction_log_written_rows_total              rows written into the log's segments
    prediction_log_healthy                         0 while the log cannot write (then /predict answers 503)
    shadow_requests_total{outcome}                 with a shadow challenger (``mirror.py``): copies mirrored,
                                                   rejected, failed, timeout, dropped (queue full)
    shadow_queued_requests                         copies waiting to be sent to the challenger

The counts are plain integers under one lock, turned into metric families by prometheus-client
at scrape time (a collector on this app's own registry, so several apps in one process never share
counters); the log's figures are read at scrape time too, never on the hot path. prometheus-client's
own Counter and Histogram cost 8.7 µs per request for status + latency here (loaded machine), this
~1-2 µs; see tests/serving/test_metrics.py for the measured figure.

With ``--workers N`` every process keeps its own metrics and a scrape reaches one of them at
random: run one process per container (Kubernetes: replicas) when you need exact series.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

if TYPE_CHECKING:
    from provenflow.serving.bundle import LoadedModel
    from provenflow.serving.mirror import Mirror
    from provenflow.serving.predictlog.log import PredictionLog
    from provenflow.serving.runtime import Predictions

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Latency buckets for a server that answers one row in ~0.4 ms and 100,000 rows in seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Regressors: a value's scale is unknown at load, so 1-2.5-5 steps over ten decades, both signs.
_POSITIVE = [m * 10.0**e for e in range(-3, 7) for m in (1.0, 2.5, 5.0)]
VALUE_BUCKETS = tuple(sorted([-b for b in _POSITIVE] + [0.0] + _POSITIVE))


class ServerMetrics:
    """The counts one server process keeps, and their Prometheus exposition."""

    def __init__(self, model: LoadedModel, log: PredictionLog | None, mirror: Mirror | None = None) -> None:
        meta = model.metadata
        self._info = {
            "name": meta.name,
            "version": str(meta.version),
            "hash": meta.hash,
            "runtime": model.runtime,
        }
        self._log = log
        self._mirror = mirror
        self._lock = threading.Lock()  # requests run on the event loop and in the thread pool
        self._requests: dict[tuple[str, str], int] = {}
        self._latency: dict[str, list] = {}  # endpoint -> [per-bucket counts (last: +Inf), sum]
        self._rows = 0
        self._classes: dict[Any, int] | None = None
        self._values: np.ndarray | None = None
        self._value_sum = 0.0
        if model.classes is not None:
            self._classes = dict.fromkeys(model.classes, 0)
        else:
            self._values = np.zeros(len(VALUE_BUCKETS) + 1, dtype=np.int64)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """One answered request."""
        bucket = bisect_left(LATENCY_BUCKETS, seconds)  # Prometheus' "le": the first bound >= seconds
        key = (endpoint, str(status))
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            latency = self._latency.get(endpoint)
            if latency is None:
                latency = self._latency[endpoint] = [[0] * (len(LATENCY_BUCKETS) + 1), 0.0]
            latency[0][bucket] += 1
            latency[1] += seconds

    def predicted(self, predictions: Predictions) -> None:
        """Rows answered with a prediction."""
        labels = predictions.labels
        if self._classes is not None:
            # collections.Counter over the labels: ~10x faster than np.unique on object (string) arrays
            tally = Tally(labels.tolist()).items() if len(labels) > 1 else ((labels[0], 1),)
            with self._lock:
                self._rows += len(labels)
                for value, count in tally:
                    if value in self._classes:
                        self._classes[value] += count
            return
        values = np.asarray(labels, dtype=np.float64)
        values = values[~np.isnan(values)]
        counts = np.bincount(
            np.searchsorted(VALUE_BUCKETS, values, side="left"), minlength=len(VALUE_BUCKETS) + 1
        )
        with self._lock:
            self._rows += len(labels)
            self._values += counts
            self._value_sum += float(values.sum())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        """prometheus-client's collector protocol: the families, built at scrape time."""
        with self._lock:
            requests = dict(self._requests)
            latency = {e: (list(c), s) for e, (c, s) in self._latency.items()}
            rows = self._rows
            classes = dict(self._classes) if self._classes is not None else None
            values = self._values.copy() if self._values is not None else None
            value_sum = self._value_sum
        info = GaugeMetricFamily("provenflow_model_info", "The served model version", labels=list(self._info))
        info.add_metric(list(self._info.values()), 1)
        yield info
        family = CounterMetricFamily(
            "provenflow_requests",
            "Answered requests by endpoint and HTTP status",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), count in sorted(requests.items()):
            family.add_metric([endpoint, status], count)
        yield family
        histogram = HistogramMetricFamily(
            "provenflow_request_duration_seconds", "Time to answer a request", labels=["endpoint"]
        )
        for endpoint, (counts, total) in sorted(latency.items()):
            histogram.add_metric([endpoint], _cumulative(LATENCY_BUCKETS, counts), total)
        yield histogram
        yield CounterMetricFamily("provenflow_rows_predicted", "Rows answered with a prediction", value=rows)
        if classes is not None:
            family = CounterMetricFamily(
                "provenflow_predictions", "Predicted rows per class", labels=["class"]
            )
            for value, count in classes.items():
                family.add_metric([str(value)], count)
            yield family
        if values is not None:
            histogram = HistogramMetricFamily("provenflow_prediction_value", "Predicted values (regressors)")
            histogram.add_metric([], _cumulative(VALUE_BUCKETS, values.tolist()), value_sum)
            yield histogram
            # prometheus-client leaves out a histogram's _count and _sum when it has negative buckets:
            # the count is rows_predicted_total, the sum (for a mean prediction) is this gauge.
            yield GaugeMetricFamily(
                "provenflow_prediction_values_sum", "Sum of predicted values (regressors)", value=value_sum
            )
        if self._log is not None:
            yield GaugeMetricFamily(
                "provenflow_prediction_log_buffered_rows",
                "Rows in write-ahead files not yet written into a segment", value=self._log.buffered_rows,
            )  # fmt: skip
            yield CounterMetricFamily(
                "provenflow_prediction_log_written_rows", "Rows written into the prediction log's segments",
                value=self._log.rows_written,
            )  # fmt: skip
            yield GaugeMetricFamily(
                "provenflow_prediction_log_healthy", "1 while the prediction log writes, 0 while it cannot",
                value=0 if self._log.error is not None else 1,
            )  # fmt: skip
        if self._mirror is not None:
            family = CounterMetricFamily(
                "provenflow_shadow_requests", "Copies of answered requests for the shadow challenger, by outcome",
                labels=["outcome"],
            )  # fmt: skip
            for outcome, count in self._mirror.counts().items():
                family.add_metric([outcome], count)
            yield family
            yield GaugeMetricFamily(
                "provenflow_shadow_queued_requests", "Copies waiting to be sent to the shadow challenger",
                value=self._mirror.queued,
            )  # fmt: skip


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    out, running = [], 0
    for bound, count in zip([*(repr(float(b)) for b in bounds), "+Inf"], counts, strict=True):
        running += count
        out.append((bound, running))
    return out
