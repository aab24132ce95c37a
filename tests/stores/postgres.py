"""Throwaway PostgreSQL databases on the local server, for the store suite and bench."""

from __future__ import annotations

import uuid
from functools import cache

HOST = "127.0.0.1:5432"
ADMIN_URL = f"postgresql://postgres@{HOST}/postgres"
UNREACHABLE = f"PostgreSQL not reachable at {HOST}"


@cache
def postgres_reachable() -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


class PostgresDatabases:
    """Creates databases `lipsync_test_<random>`; `drop_all` removes them."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self) -> str:
        import psycopg

        name = f"lipsync_test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"'.encode())
        self.names.append(name)
        return f"postgresql://postgres@{HOST}/{name}"

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            for name in self.names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        self.names.clear()
