"""A real PostgreSQL for component tests: a throwaway cluster made by the stack's own
code (tools/postgres.py: the postgres user, its own mount namespace) in a temporary
folder, on a free 127.0.0.1 port. It can be stopped and started again (a test of
the copier while the database is down).

Import the fixtures into a test module: ``from tests.component.pgserver import postgres, pg_url``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from tests.component.conftest import HOST, _free_port
from tools import postgres as pg
from tools.config import POSTGRES_DB, POSTGRES_USER

PASSWORD = "5eed" * 8
STEP_S = 20.0
TABLES = ("calls", "card_ledger", "relative_ledger", "stream_positions", "copy_rejects", "schema_version")


@dataclass
class PostgresServer:
    folder: Path
    port: int
    proc: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        return f"postgresql://{POSTGRES_USER}:{PASSWORD}@{HOST}:{self.port}/{POSTGRES_DB}"

    def start(self) -> None:
        with (self.folder.parent / "postgres.log").open("ab") as log:
            self.proc = subprocess.Popen(pg.server_argv(self.folder, HOST, self.port), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        pg.wait_ready(HOST, self.port, STEP_S)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(STEP_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STEP_S)
        self.proc = None


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    top = tmp_path_factory.mktemp("pg") / "postgres"
    pg.ensure_cluster(top, PASSWORD)
    server = PostgresServer(top, _free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def pg_url(postgres: PostgresServer) -> str:
    """The server (started again if a test stopped it) with none of the history's tables."""
    if postgres.proc is None or postgres.proc.poll() is not None:
        postgres.start()
    conn = await asyncpg.connect(postgres.url)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}")
    finally:
        await conn.close()
    return postgres.url
