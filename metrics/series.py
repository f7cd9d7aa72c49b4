"""The series of each process, and the mapping from outcomes to bounded label values.

One class per process (AGI server, relatives' API, push bridge, reconciler); each
builds its own registry. Known label values are created at zero, so a dashboard
sees every series before the first call moves it."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ivr import prompts as p

# A route's wall time: the hangup route takes milliseconds, the IVR route a whole
# login and number entry (tens of seconds), the app wait up to its window.
ROUTE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
# The time a route spends in Kinline itself (decisions, Redis), not waiting for
# Asterisk: what grows first under overload.
OWN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PUSH_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Routes during which the inmate is in the IVR (before Dial and after it).
IVR_ROUTES = frozenset({"inmate_call", "after_dial"})
ROUTE_RESULTS = ("ok", "hangup", "timeout", "error", "cancelled")
CALL_OUTCOMES = ("dialed", "refused")

# Why a call was refused, from the prompt the caller heard (ivr/inmate_call.py's Refused).
REFUSAL_REASONS = {
    p.APOLOGY: "internal_error",  # unknown terminal or facility, unusable PIN hash, no tariff
    p.TERMINAL_WAIT: "terminal_throttled",
    p.TOO_MANY_TRIES: "login_failed",
    p.CARD_LOCKED: "card_locked",
    p.CARD_BLOCKED: "card_blocked",
    p.INMATE_SUSPENDED: "inmate_suspended",
    p.PERMISSION_MISSING: "permission_missing",
    p.OUTSIDE_SCHEDULE: "outside_schedule",
    p.CARD_IN_USE: "card_in_use",
    p.NO_FUNDS: "no_funds",
    p.SERVICE_UNAVAILABLE: "service_unavailable",
    p.GOODBYE: "no_valid_number",
    p.LINES_BUSY: "overload",  # overload control (ivr/overload.py): refused before the login
}
ATTEMPTS_EXHAUSTED = "attempts_exhausted"  # every dial attempt of the call used (GOODBYE too)
OTHER = "other"

DIAL_STATUSES = ("ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL", "DONTCALL", "TORTURE",
                 "INVALIDARGS")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
PUSH_PLATFORMS = ("fcm", "apns", "hms")
PUSH_KINDS = ("wake", "cancel")
PUSH_OUTCOMES = ("delivered", "invalid_token", "failed", "error")


def refusal_reason(prompt: str, reason: str = "") -> str:
    """The label of a refusal: bounded, whatever the (free-text) reason says."""
    if prompt == p.GOODBYE and reason == "no more attempts":
        return ATTEMPTS_EXHAUSTED
    return REFUSAL_REASONS.get(prompt, OTHER)


def dial_status(status: str) -> str:
    """Dial()'s DIALSTATUS as a label ("none": Dial never ran or left nothing)."""
    if not status:
        return "none"
    return status.lower() if status in DIAL_STATUSES else OTHER


def http_method(method: str) -> str:
    return method if method in HTTP_METHODS else OTHER


class AgiMetrics:
    """The FastAGI server's series."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.route_seconds = Histogram("kinline_agi_route_duration_seconds", "Wall time of an AGI route run",
                                       ["route"], buckets=ROUTE_BUCKETS, registry=r)
        self.route_own_seconds = Histogram(
            "kinline_agi_route_own_seconds", "Time an AGI route run spent in Kinline, not waiting for Asterisk",
            ["route"], buckets=OWN_BUCKETS, registry=r)
        self.route_runs = Counter("kinline_agi_route_runs", "AGI route runs by how they ended",
                                  ["route", "result"], registry=r)
        self.calls = Counter("kinline_calls", "Inmate call decisions: an attempt dialed, or the call refused",
                             ["outcome"], registry=r)
        self.refusals = Counter("kinline_call_refusals", "Refused inmate calls by reason", ["reason"], registry=r)
        self.settlements = Counter("kinline_settlements", "Attempts settled by the AGI server, by Dial's status",
                                   ["status"], registry=r)
        self.settlement_retries = Counter("kinline_settlement_retries",
                                          "Settlements tried again after the store failed", registry=r)
        self.in_ivr = Gauge("kinline_calls_in_ivr", "Calls in the IVR now (login, number entry, after Dial)",
                            registry=r)
        self.open_holds = Gauge("kinline_open_holds", "Attempts holding money (dialed, not settled), read at scrape",
                                registry=r)
        self.cards_in_call = Gauge("kinline_cards_in_call", "Cards locked by a call in progress, read at scrape",
                                   registry=r)
        self.agi_latency = Gauge("kinline_agi_command_latency_seconds",
                                 "Overload control's measure, read at scrape: the p90 of quick AGI command round "
                                 "trips over its window (0 with too few)", registry=r)
        for outcome in CALL_OUTCOMES:
            self.calls.labels(outcome)
        for reason in {*REFUSAL_REASONS.values(), ATTEMPTS_EXHAUSTED, OTHER}:
            self.refusals.labels(reason)
        for status in (*(dial_status(s) for s in DIAL_STATUSES), "none", OTHER):
            self.settlements.labels(status)

    def know_routes(self, routes: Iterable[str]) -> None:
        """Create every route's series at zero."""
        for route in routes:
            self.route_seconds.labels(route)
            self.route_own_seconds.labels(route)
            for result in ROUTE_RESULTS:
                self.route_runs.labels(route, result)

    def route_started(self, route: str) -> None:
        if route in IVR_ROUTES:
            self.in_ivr.inc()

    def route_done(self, route: str, result: str, wall_s: float, own_s: float) -> None:
        if route in IVR_ROUTES:
            self.in_ivr.dec()
        self.route_seconds.labels(route).observe(wall_s)
        self.route_own_seconds.labels(route).observe(max(0.0, own_s))
        self.route_runs.labels(route, result if result in ROUTE_RESULTS else OTHER).inc()

    def dialed(self) -> None:
        self.calls.labels("dialed").inc()

    def refused(self, prompt: str, reason: str) -> None:
        self.calls.labels("refused").inc()
        self.refusals.labels(refusal_reason(prompt, reason)).inc()

    def settled(self, status: str) -> None:
        self.settlements.labels(dial_status(status)).inc()

    def settlement_retry(self) -> None:
        self.settlement_retries.inc()


class ApiMetrics:
    """The relatives' API's series."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("kinline_api_requests", "HTTP requests by method, route template and status",
                                ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram("kinline_api_request_duration_seconds", "HTTP request time by route",
                                         ["route"], buckets=API_BUCKETS, registry=r)

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(http_method(method), route, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)


class PushMetrics:
    """The push bridge's series."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.pushes = Counter("kinline_pushes", "Pushes sent, by provider, kind (wake/cancel) and result",
                              ["platform", "kind", "outcome"], registry=r)
        self.push_seconds = Histogram("kinline_push_duration_seconds",
                                      "Time from a push's first try to the provider's final answer",
                                      ["platform"], buckets=PUSH_BUCKETS, registry=r)

    def know_platforms(self, platforms: Iterable[str]) -> None:
        for platform in platforms:
            self.push_seconds.labels(platform)
            for kind in PUSH_KINDS:
                for outcome in PUSH_OUTCOMES:
                    self.pushes.labels(platform, kind, outcome)

    def pushed(self, platform: str, kind: str, outcome: str, seconds: float) -> None:
        platform = platform if platform in PUSH_PLATFORMS else OTHER
        self.pushes.labels(platform, kind if kind in PUSH_KINDS else OTHER,
                           outcome if outcome in PUSH_OUTCOMES else OTHER).inc()
        self.push_seconds.labels(platform).observe(seconds)


class ReconcilerMetrics:
    """The reconciler's series: what it settled and freed for calls whose own hangup path never ran."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.cycles = Counter("kinline_reconciler_cycles", "Reconciler passes by result", ["result"], registry=r)
        self.settled = Counter("kinline_reconciler_settled",
                               "Attempts the reconciler settled (their hangup path never ran)", registry=r)
        self.locks_released = Counter("kinline_reconciler_locks_released",
                                      "Card locks the reconciler freed (their call was gone)", registry=r)
        self.heartbeats = Counter("kinline_reconciler_heartbeats",
                                  "Heartbeats written for bridged calls while Asterisk answered", registry=r)
        self.log_errors = Counter("kinline_reconciler_event_log_errors",
                                  "Malformed Kinline lines in Asterisk's event log", registry=r)
        self.refunds = Counter("kinline_reconciler_inactivity_refunds",
                               "Relatives' balances refunded after inactivity", registry=r)
        self.bridged = Gauge("kinline_calls_bridged",
                             "Calls bridged now (bridge seen in Asterisk's event log, end not yet)", registry=r)
        for result in ("ok", "failed"):
            self.cycles.labels(result)
