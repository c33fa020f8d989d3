"""Prometheus text-format metrics: requests, tokens, latency, time to first token, queues.

Hand-rolled (a few counters and two histograms) rather than a dependency: the exposition
format is plain text and the server has only these series."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, float("inf"))


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.n += 1
        self.total += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out = []
        for bound, count in zip(BUCKETS, self.counts, strict=True):
            le = "+Inf" if bound == float("inf") else repr(bound)
            sep = "," if labels else ""
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {count}')
        out.append(f"{name}_sum{{{labels}}} {self.total}")
        out.append(f"{name}_count{{{labels}}} {self.n}")
        return out


class Metrics:
    """Everything /metrics shows; updated from request handlers and worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.tokens: dict[tuple[str, str], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = defaultdict(Histogram)
        self.first_token: dict[str, Histogram] = defaultdict(Histogram)
        # model -> () -> (queued, running, forward passes, rows in them); read when scraped
        self.gauges: dict[str, Callable[[], tuple[int, int, int, int]]] = {}

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            self.latency[route].observe(seconds)

    def generated(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self.tokens[(model, "prompt")] += prompt_tokens
            self.tokens[(model, "completion")] += completion_tokens

    def first(self, model: str, seconds: float) -> None:
        with self._lock:
            self.first_token[model].observe(seconds)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP musegpt_requests_total HTTP requests by route and status.",
                "# TYPE musegpt_requests_total counter",
            ]
            for (route, status), n in sorted(self.requests.items()):
                lines.append(f'musegpt_requests_total{{route="{route}",status="{status}"}} {n}')
            lines += [
                "# HELP musegpt_tokens_total Tokens read (prompt) and written (completion).",
                "# TYPE musegpt_tokens_total counter",
            ]
            for (model, kind), n in sorted(self.tokens.items()):
                lines.append(f'musegpt_tokens_total{{model="{model}",kind="{kind}"}} {n}')
            lines += [
                "# HELP musegpt_request_seconds Request latency by route.",
                "# TYPE musegpt_request_seconds histogram",
            ]
            for route, hist in sorted(self.latency.items()):
                lines += hist.lines("musegpt_request_seconds", f'route="{route}"')
            lines += [
                "# HELP musegpt_time_to_first_token_seconds Streamed requests' first token.",
                "# TYPE musegpt_time_to_first_token_seconds histogram",
            ]
            for model, hist in sorted(self.first_token.items()):
                lines += hist.lines("musegpt_time_to_first_token_seconds", f'model="{model}"')
            gauges = dict(self.gauges)
        lines += [
            "# HELP musegpt_queue_depth Requests waiting for a model.",
            "# TYPE musegpt_queue_depth gauge",
        ]
        values = {model: read() for model, read in sorted(gauges.items())}
        for model, (queued, _, _, _) in values.items():
            lines.append(f'musegpt_queue_depth{{model="{model}"}} {queued}')
        lines += ["# TYPE musegpt_running_requests gauge"]
        for model, (_, running, _, _) in values.items():
            lines.append(f'musegpt_running_requests{{model="{model}"}} {running}')
        lines += ["# TYPE musegpt_batch_steps_total counter"]
        for model, (_, _, steps, _) in values.items():
            lines.append(f'musegpt_batch_steps_total{{model="{model}"}} {steps}')
        lines += ["# TYPE musegpt_batch_rows_total counter"]
        for model, (_, _, _, rows) in values.items():
            lines.append(f'musegpt_batch_rows_total{{model="{model}"}} {rows}')
        return "\n".join(lines) + "\n"
