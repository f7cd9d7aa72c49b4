"""Prometheus metrics: the series each process exposes (series.py) and the small
asyncio HTTP endpoint that serves them (endpoint.py).

Each process builds its own registry in its main() and passes the series to the
adapters that move them; nothing registers itself on import. Label values are
bounded (route names, outcome and reason codes, push platforms), never a card,
a phone number or a call id. The domain (ivr/) knows nothing of this package:
the adapters map its typed results and errors to labels here."""
