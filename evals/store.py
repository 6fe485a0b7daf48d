"""What an eval run keeps on local disk: the response cache and the resume file.

* :class:`ResponseCache` is a SQLite table of target responses keyed by a hash of the
  target's identity (resolved prompt and model versions, parameters), the request and the
  epoch index. A rerun of an unchanged suite is answered from it; hits are counted.
* :class:`ResultsFile` is a JSONL file of finished examples, appended as each finishes. A run
  that stops (crash, Ctrl-C, a failed call) resumes from it: finished examples are not
  called again. A torn last line (the process died mid-write) is ignored.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from lockgate.evals.records import ExampleResult, canonical_json


class ResponseCache:
    """A SQLite response cache; ``hits`` and ``misses`` count lookups."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        self.hits = 0
        self.misses = 0
        self._pending: list[tuple[str, str]] = []

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        value: dict[str, Any] = json.loads(row[0])
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._pending.append((key, canonical_json(value)))
        if len(self._pending) >= 64:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", self._pending
                )
            self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._db.close()


class ResultsFile:
    """Append-only JSONL of :class:`ExampleResult` rows, for resume and the run artifact."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh: Any = None

    def load(self) -> dict[tuple[int, int], ExampleResult]:
        done: dict[tuple[int, int], ExampleResult] = {}
        if not self.path.exists():
            return done
        with self.path.open("r", encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a torn last line from an interrupted write
                result = ExampleResult.from_row(row)
                done[(result.index, result.epoch)] = result
        return done

    def append(self, result: ExampleResult) -> None:
        if self._fh is None:
            self._repair()
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(canonical_json(result.to_row()) + "\n")
        self._fh.flush()

    def _repair(self) -> None:
        """Drop a torn trailing line so appended rows start on a line of their own."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                data = self.path.read_bytes()
                f.seek(0)
                f.truncate(data.rfind(b"\n") + 1)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
