"""MongoDB for tests: a MockupDB server that shows each command pymongo sends, a URI where nothing listens, and the
marks of tests that need the real server named by MONGODB_URI."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from mockupdb import MockupDB

LIVE_URI = os.environ.get("MONGODB_URI", "")

Test = TypeVar("Test", bound=Callable[..., Any])


def live_mongodb(test: Test) -> Test:
    """Mark a test of the real server at MONGODB_URI; skipped without it."""
    marked: Test = pytest.mark.live(pytest.mark.skipif(not LIVE_URI, reason="MONGODB_URI is not set")(test))
    return marked


def mockup_server() -> Iterator[MockupDB]:
    """A MockupDB speaking MongoDB 7.0's wire version (21) on 127.0.0.1; stopping it takes a second."""
    mock = MockupDB(auto_ismaster=True, max_wire_version=21)
    mock._address = ("127.0.0.1", 0)  # IPv4 only: "localhost" may resolve to ::1 first
    mock.run()
    yield mock
    mock.stop()


def mockup_uri(mock: MockupDB) -> str:
    return f"mongodb://127.0.0.1:{mock.port}/?directConnection=true&serverSelectionTimeoutMS=3000"


def dead_server_uri() -> str:
    """A URI of a port nothing listens on, that gives up at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=100"
