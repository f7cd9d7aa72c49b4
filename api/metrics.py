"""The API's Prometheus series: every request counted by method, route template and
status, and timed; ``GET /metrics`` serves them (not in the OpenAPI schema)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from metrics.series import ApiMetrics

UNMATCHED = "unmatched"  # no route: the raw path is never a label


def route_label(request: Request) -> str:
    """The matched route's template ("/v1/calls/{call_id}"), never the path itself."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


def instrument(app: FastAPI, metrics: ApiMetrics | None = None) -> ApiMetrics:
    """Count and time every request of ``app``; serve the series at /metrics."""
    series = metrics if metrics is not None else ApiMetrics()
    app.state.metrics = series

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        status = 500  # an exception no handler turned into an answer
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            series.request_done(request.method, route_label(request), status, time.perf_counter() - started)

    async def scrape() -> Response:
        return Response(generate_latest(series.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", scrape, methods=["GET"], include_in_schema=False)
    return series
