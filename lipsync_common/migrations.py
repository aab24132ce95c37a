"""A store's schema migrations: a list applied in order, once each, per database.

Each store keeps its versions in its own database's `schema_version` table (1
is the first migration of the list). A migration is a script written once for
both databases, using types that mean the same on each (TEXT, BIGINT, DOUBLE
PRECISION: SQLite reads the latter two by affinity as INTEGER and REAL), or a
`Migration(sqlite=..., postgres=...)` pair where they differ (an autoincrement
key, BLOB/BYTEA, triggers).

Replicas starting together take turns: the whole run is one transaction that
first takes the database's write lock (SQLite: the caller's BEGIN IMMEDIATE) or
a transaction-scoped advisory lock (PostgreSQL), then reads the version, so no
two processes apply the same migration.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text

# Advisory lock key held while migrating ("lipsync").
MIGRATION_LOCK = 0x6C69_7073_796E_63


@dataclass(frozen=True)
class Migration:
    """One migration written per dialect, where one script cannot serve both."""

    sqlite: str
    postgres: str


MigrationStep = str | Migration


def sqlite_statements(script: str) -> list[str]:
    """Split a script into statements (sqlite3 runs one at a time); a trigger's `;` stays."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


def _apply(conn: Connection, script: str) -> None:
    if conn.dialect.name == "sqlite":
        for statement in sqlite_statements(script):
            conn.exec_driver_sql(statement)
    else:
        # No parameters: psycopg sends the script as one multi-statement query,
        # so a function body's `;` needs no splitting.
        conn.exec_driver_sql(script, execution_options={"no_parameters": True})


def migrate(conn: Connection, migrations: Sequence[MigrationStep]) -> None:
    """Apply the pending migrations, inside the caller's transaction on `conn`."""
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
    current = conn.execute(text("SELECT MAX(version) FROM schema_version")).scalar() or 0
    for version, migration in enumerate(migrations, start=1):
        if version <= current:
            continue
        if isinstance(migration, Migration):
            _apply(conn, migration.postgres if postgres else migration.sqlite)
        else:
            _apply(conn, migration)
        conn.execute(text("INSERT INTO schema_version (version) VALUES (:v)"), {"v": version})
