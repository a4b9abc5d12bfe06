"""The ``projects`` table: names, token hashes, quotas and default idle policies."""

from __future__ import annotations

import builtins
import json
import sqlite3
from dataclasses import asdict
from typing import Any

from bungalow.daemon.state.db import Database
from bungalow.daemon.state.records import Project
from bungalow.errors import ConflictError, NotFoundError

_QUOTAS = frozenset({"max_vcpus", "max_memory", "max_disk", "max_vms"})


def _record(row: sqlite3.Row) -> Project:
    data = dict(row)
    data["idle"] = json.loads(data["idle"] or "{}")
    return Project(**data)


class ProjectTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    def insert(self, project: Project) -> None:
        """Add a project; ConflictError when the name is taken."""
        data = asdict(project)
        data["idle"] = json.dumps(project.idle)
        try:
            self._db.execute(
                f"INSERT INTO projects ({', '.join(data)}) VALUES "
                f"({', '.join(':' + key for key in data)})",
                data,
            )
        except sqlite3.IntegrityError:
            raise ConflictError(
                f"A project named {project.name} already exists; choose another name."
            ) from None

    def list(self) -> builtins.list[Project]:
        return [_record(row) for row in self._db.all("SELECT * FROM projects ORDER BY name")]

    def names(self) -> set[str]:
        return {row["name"] for row in self._db.all("SELECT name FROM projects")}

    def find(self, name: str) -> Project | None:
        row = self._db.one("SELECT * FROM projects WHERE name = ?", (name,))
        return _record(row) if row else None

    def get(self, name: str) -> Project:
        """The project ``name``; NotFoundError with a sentence when there is none."""
        project = self.find(name)
        if project is None:
            raise NotFoundError(
                f"There is no project named {name}; `bungalow project ls` lists them."
            )
        return project

    def set_quota(self, name: str, quota: dict[str, int | None]) -> Project:
        """Change the quotas named in ``quota`` (max_vcpus, max_memory, max_disk, max_vms)."""
        unknown = set(quota) - _QUOTAS
        if unknown:
            raise ValueError(f"not quotas: {', '.join(sorted(unknown))}")
        self.get(name)
        with self._db.transaction():
            for key, value in quota.items():
                self._db.execute(f"UPDATE projects SET {key} = ? WHERE name = ?", (value, name))
        return self.get(name)

    def set_idle(self, name: str, idle: dict[str, Any]) -> Project:
        self.get(name)
        self._db.execute("UPDATE projects SET idle = ? WHERE name = ?", (json.dumps(idle), name))
        return self.get(name)

    def delete(self, name: str) -> None:
        self._db.execute("DELETE FROM projects WHERE name = ?", (name,))
