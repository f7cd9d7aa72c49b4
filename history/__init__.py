"""History: call records and ledgers copied exactly once from Redis into PostgreSQL.

Redis keeps the live state (balances, holds, locks) and the recent records;
``history.copier`` moves every settled call and ledger entry into PostgreSQL
and then lets Redis forget what is both copied and older than the retention.
``history.queries`` reads it back for the API and the CLI.
"""
