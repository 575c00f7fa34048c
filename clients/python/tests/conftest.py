"""Fixtures: one `pier serve` (and one etcd for the KV tests) per session, clients, unique names."""
import os
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import pier  # noqa: E402
from servers import EtcdServer, PierServer, etcd_available  # noqa: E402

@pytest.fixture(scope="session")
def pier_server():
    server = PierServer()
    yield server
    code = server.stop()
    assert code == 0, f"pier exited with {code}; stderr:\n{''.join(server.stderr_lines[-50:])}"


@pytest.fixture(scope="session")
def etcd_server():
    if not etcd_available():
        pytest.skip("etcd is not installed")
    server = EtcdServer()
    yield server
    server.stop()


@pytest.fixture(params=["pier", "etcd"])
def kv_endpoint(request):
    """The KV tests run against Pier and against a real etcd 3.4: the client must behave the same."""
    server = request.getfixturevalue("pier_server" if request.param == "pier" else "etcd_server")
    return server.address


@pytest.fixture
def client(kv_endpoint):
    with pier.Client(kv_endpoint, timeout=10) as c:
        yield c


@pytest.fixture
def pier_client(pier_server):
    with pier.Client(pier_server.address, timeout=10) as c:
        yield c


@pytest.fixture
def prefix():
    """A key prefix (or topic name stem) of this test's own, so tests sharing a server never collide."""
    return f"t-{uuid.uuid4().hex[:10]}"
