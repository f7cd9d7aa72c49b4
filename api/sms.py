"""SMS adapters. The dev adapter appends "phone code" lines to a file (no network)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class FileSms:
    """Implements ``ivr.ports.SmsSender`` by appending ``<phone> <text>`` lines to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, phone: str, text: str) -> None:
        await asyncio.to_thread(self._append, f"{phone} {text}\n")
        log.info("sms to %s written to %s", phone, self.path)

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
