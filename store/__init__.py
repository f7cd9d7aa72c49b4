"""Storage adapters: Redis implements the ivr.ports Protocols."""

from store.redis_store import LedgerEntry, RedisStore, connect

__all__ = ["LedgerEntry", "RedisStore", "connect"]
