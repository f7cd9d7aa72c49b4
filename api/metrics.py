"""The API's Prometheus series: every request counted by method, route template and
status, and timed; ``GET /metrics`` serves them (not in the OpenAPI schema)."""

from __future__ import annotations

import time

from fastapi import FastAPI, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metrics.series import ApiMetrics

UNMATCHED = "unmatched"  # no route: the raw path is never a label


def route_label(scope: Scope) -> str:
    """The matched route's template ("/v1/calls/{call_id}"), never the path itself."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class CountRequests:
    """ASGI middleware: count and time every HTTP request (the status from the response's start)."""

    def __init__(self, app: ASGIApp, series: ApiMetrics) -> None:
        self.app = app
        self.series = series

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # no answer started: an exception no handler turned into one

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.series.request_done(scope["method"], route_label(scope), status, time.perf_counter() - started)


def instrument(app: FastAPI, metrics: ApiMetrics | None = None) -> ApiMetrics:
    """Count and time every request of ``app``; serve the series at /metrics."""
    series = metrics if metrics is not None else ApiMetrics()
    app.state.metrics = series
    app.add_middleware(CountRequests, series=series)

    async def scrape() -> Response:
        return Response(generate_latest(series.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", scrape, methods=["GET"], include_in_schema=False)
    return series
