"""IB order ids that are never reused, across sessions and restarts.

TWS hands out `nextValidId` at connect, but an id already used by this client id (in an earlier
session, or before a restart whose orders TWS has forgotten) must never be sent again: TWS either
refuses it (error 103) or, worse, treats the new order as a modification of the old one. Ids are
reserved in blocks: the highest reserved id is written (atomically, fsynced) to a small JSON state
file keyed by client id before any id of the block is used, so a crash can only skip ids.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class OrderIdStore:
    def __init__(self, path: str | Path | None, key: str, block: int = 50) -> None:
        self.path = Path(path) if path else None
        self.key = key
        self.block = max(1, block)
        self._lock = threading.Lock()
        self._reserved = self._load()  # highest id reserved (and maybe used) so far
        self._next = self._reserved + 1
        self.writes = 0

    def _load(self) -> int:
        if self.path is None or not self.path.exists():
            return 0
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError) as exc:
            # Refuse to guess: a lost state file could mean reusing ids.
            raise RuntimeError(f"unreadable IB order id state {self.path}: {exc}") from exc
        return int(data.get(self.key, {}).get("reserved_upto", 0))

    @property
    def last_reserved(self) -> int:
        return self._reserved

    def allocate(self, floor: int = 0) -> int:
        """The next id: at least `floor` (TWS's nextValidId), above every id ever reserved."""
        with self._lock:
            oid = max(self._next, floor)
            if oid > self._reserved:
                self._persist(oid + self.block - 1)
            self._next = oid + 1
            return oid

    def bump(self, above: int) -> None:
        """TWS said an id is taken (error 103) or showed an order with this id: skip past it."""
        with self._lock:
            if above >= self._next:
                self._next = above + 1
                if self._next > self._reserved:
                    self._persist(self._next + self.block - 1)

    def _persist(self, upto: int) -> None:
        self._reserved = upto
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data: dict = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text() or "{}")
            except ValueError:
                data = {}
        data[self.key] = {"reserved_upto": upto}
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(data, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self.writes += 1
