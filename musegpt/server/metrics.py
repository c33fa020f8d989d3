"""Prometheus metrics: requests, tokens, latency, time to first token, queues and batches.

Written with `prometheus_client` (its exposition escapes label values). Requests are labelled
by route template (`/v1/documents/{document_id}`), never by the raw path, and every path no
route serves shares the label `unmatched`, so clients cannot grow the page or forge lines."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, float("inf"))
UNMATCHED = "unmatched"  # the route label of every path no route serves
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# model -> () -> (queued, running, forward passes, rows in them); read when scraped
GaugeSource = Callable[[], tuple[int, int, int, int]]


class Metrics:
    """Everything /metrics shows; updated from request handlers and worker threads (the
    client's metrics are thread-safe). Each server has its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.gauges: dict[str, GaugeSource] = {}
        self._requests = Counter(
            "musegpt_requests",
            "HTTP requests by route template and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self._tokens = Counter(
            "musegpt_tokens",
            "Tokens read (prompt) and written (completion).",
            ["model", "kind"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "musegpt_request_seconds",
            "Request latency by route template.",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._first_token = Histogram(
            "musegpt_time_to_first_token_seconds",
            "Streamed requests' first token.",
            ["model"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_ModelGauges(self.gauges))

    def request(self, route: str, status: int, seconds: float) -> None:
        self._requests.labels(route, str(status)).inc()
        self._latency.labels(route).observe(seconds)

    def generated(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        self._tokens.labels(model, "prompt").inc(prompt_tokens)
        self._tokens.labels(model, "completion").inc(completion_tokens)

    def first(self, model: str, seconds: float) -> None:
        self._first_token.labels(model).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ModelGauges(Collector):
    """Each model's queue, running requests and batching, read from its host when scraped."""

    def __init__(self, sources: dict[str, GaugeSource]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        queued = GaugeMetricFamily(
            "musegpt_queue_depth", "Requests waiting for a model.", labels=["model"]
        )
        running = GaugeMetricFamily(
            "musegpt_running_requests", "Requests a model is serving.", labels=["model"]
        )
        steps = CounterMetricFamily(
            "musegpt_batch_steps", "Batched forward passes.", labels=["model"]
        )
        rows = CounterMetricFamily(
            "musegpt_batch_rows", "Rows decoded in batched forward passes.", labels=["model"]
        )
        for model, read in sorted(self.sources.items()):
            waiting, serving, passes, stepped = read()
            queued.add_metric([model], waiting)
            running.add_metric([model], serving)
            steps.add_metric([model], passes)
            rows.add_metric([model], stepped)
        yield from (queued, running, steps, rows)
