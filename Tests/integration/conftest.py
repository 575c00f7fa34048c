"""Shared fixtures: build the Swift products once, start servers on free loopback ports, stop them."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))

import pier_servers  # noqa: E402,F401  (re-exported for test modules)
from pier_servers import ServerProcess, start_pier, start_test_server  # noqa: E402,F401


@pytest.fixture(scope="session")
def test_server():
    """One pier-test-server shared by the tests that leave it as they found it."""
    server = start_test_server()
    yield server
    code = server.stop()
    assert code == 0, f"pier-test-server exited with {code}; stderr:\n{server.stderr()}"


@pytest.fixture
def test_server_factory():
    """Starts pier-test-servers with extra flags (limits); stops those still running afterwards."""
    started = []

    def start(*args):
        server = start_test_server(*args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def pier_server(tmp_path_factory):
    """One `pier serve` with a temporary data directory, shared by the session."""
    server = start_pier(tmp_path_factory.mktemp("pier-data"))
    yield server
    code = server.stop()
    assert code == 0, f"pier exited with {code}; stderr:\n{server.stderr()}"


@pytest.fixture
def pier_factory(tmp_path_factory):
    """Starts `pier serve` processes, each with a new data directory unless one is given."""
    started = []

    def start(*args, data_dir=None):
        server = start_pier(data_dir or tmp_path_factory.mktemp("pier-data"), *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
