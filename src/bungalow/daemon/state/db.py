"""The daemon's SQLite database: one connection, its transactions and its migrations.

Only the state package holds a :class:`Database`; every other part of the
daemon reads and writes through the tables' intent-named methods. The file is
in WAL mode, so a reader never waits on a writer, and every write outside a
:meth:`Database.transaction` commits at once.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bungalow.daemon.state.migrations import MIGRATIONS
from bungalow.errors import BungalowError


class Database:
    """One connection to ``path``, migrated to the newest schema when opened.

    Raises BungalowError when the file was written by a newer bungalowd.
    """

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._depth = 0
        self._migrate(path)

    @property
    def version(self) -> int:
        """How many migrations this database has had (``PRAGMA user_version``)."""
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, path: Path) -> None:
        version = self.version
        if version > len(MIGRATIONS):
            raise BungalowError(
                f"The database {path} was written by a newer bungalowd (schema {version}, this "
                f"one knows {len(MIGRATIONS)}); run that version, or move the file away."
            )
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                migration(self._db)
                self._db.execute(f"PRAGMA user_version = {number}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all; nesting joins the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    def execute(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, args)

    def one(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
        return row

    def all(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        self._db.close()
