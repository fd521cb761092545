"""Another actor at a chosen point of a test, on its own thread and its own database connection.

The lifecycle's races are run as deterministic interleavings: a test hooks a step of one actor (an ingest, a
confirmation) and starts the other actor (a delete, an expiry) right there. The other actor runs on a real second
connection, so it meets the database's own concurrency control: on PostgreSQL it may wait for a row lock the first
holds, on SQLite for the write lock of a whole transaction. The hook returns once the other actor has finished or
is waiting for a lock the first one holds (seen in pg_stat_activity, never guessed from a timeout); the first then
goes on, and the test joins the other before asserting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection, connections

# Far longer than any step takes; reaching it means the two actors deadlocked, which is a failure in itself.
PATIENCE_SECONDS = 60.0


class Actor:
    """One action run on a thread with its own connection (closed when it ends)."""

    def __init__(self, action: Callable[[], Any]) -> None:
        self.action = action
        self.value: Any = None
        self.error: BaseException | None = None
        self.backend_pid: int | None = None
        self._connected = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="other-actor", daemon=True)

    def _run(self) -> None:
        try:
            if connection.vendor == "postgresql":
                connection.ensure_connection()
                self.backend_pid = connection.connection.info.backend_pid
            self._connected.set()
            self.value = self.action()
        except BaseException as exc:
            self.error = exc
        finally:
            self._connected.set()
            connections.close_all()
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def start(self) -> None:
        self._thread.start()

    def settle(self) -> None:
        """Return once the action finished, or (PostgreSQL) waits for a lock another session holds."""
        if connection.vendor == "sqlite" and connection.in_atomic_block:
            # SQLite locks the whole database for a writing transaction: the actor's first write waits for this
            # one to commit, so it cannot finish before then.
            return
        deadline = time.monotonic() + PATIENCE_SECONDS
        self._connected.wait(PATIENCE_SECONDS)
        while not self._done.wait(0.005):
            if connection.vendor == "postgresql" and self._blocked():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the other actor neither finished nor waited for a lock in {PATIENCE_SECONDS} s")

    def _blocked(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT cardinality(pg_blocking_pids(%s))", [self.backend_pid])
            return bool(cursor.fetchone()[0])

    def join(self) -> Any:
        self._thread.join(PATIENCE_SECONDS)
        if self._thread.is_alive():
            raise TimeoutError(f"the other actor did not finish within {PATIENCE_SECONDS} s")
        if self.error is not None:
            raise self.error
        return self.value


class Alongside:
    """`alongside(action)` starts another actor now and returns once it has settled; `join()` waits for them all."""

    def __init__(self) -> None:
        self.actors: list[Actor] = []

    def __call__(self, action: Callable[[], Any]) -> Actor:
        actor = Actor(action)
        self.actors.append(actor)
        actor.start()
        actor.settle()
        return actor

    def join(self) -> list[Any]:
        return [actor.join() for actor in self.actors]


@pytest.fixture
def alongside(transactional_db: None) -> Iterator[Alongside]:
    """Other actors on their own connections; the test commits for real so that they can see its rows."""
    others = Alongside()
    try:
        yield others
    finally:
        for actor in others.actors:
            actor._thread.join(PATIENCE_SECONDS)
