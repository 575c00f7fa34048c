"""Fixtures for the etcd-compatibility tests: a real etcd 3.4 beside Pier, gRPC stubs, output normalizers.

The real etcd (Debian's /usr/bin/etcd) runs on free loopback ports with a temporary data
directory; tests send it the same requests as Pier and compare the answers.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))

import grpc  # noqa: E402

from pier._proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc  # noqa: E402,F401
from pier._proto.mvccpb import kv_pb2  # noqa: E402,F401
import pier_servers  # noqa: E402

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"

needs_etcd = pytest.mark.skipif(not (os.path.exists(ETCD) and os.path.exists(ETCDCTL)),
                                reason="etcd and etcdctl (Debian etcd-server, etcd-client) are not installed")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdProcess:
    """A single-member etcd on loopback ports with its own data directory."""

    def __init__(self, data_dir, *extra_args, startup_timeout=30.0):
        self.data_dir = str(data_dir)
        self.client_port = free_port()
        self.peer_port = free_port()
        self.address = f"127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        client = f"http://{self.address}"
        self.argv = [ETCD, "--name", "default", "--data-dir", self.data_dir,
                     "--listen-client-urls", client, "--advertise-client-urls", client,
                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                     "--initial-cluster", f"default={peer}", "--log-level", "warn", *extra_args]
        self.log = open(os.path.join(os.path.dirname(os.path.abspath(self.data_dir)), f"etcd-{self.client_port}.log"), "w")
        env = dict(os.environ)
        env.pop("ETCDCTL_API", None)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + startup_timeout
        channel = grpc.insecure_channel(self.address)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"etcd exited with {self.proc.returncode}; see {self.log.name}")
                try:
                    rpc_pb2_grpc.MaintenanceStub(channel).Status(rpc_pb2.StatusRequest(), timeout=1)
                    # Ready once it has a leader and answers a linearizable read.
                    rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"\0"), timeout=2)
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"etcd did not become ready; see {self.log.name}")
                    time.sleep(0.1)
        finally:
            channel.close()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


def start_etcd(data_dir=None, *args):
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="etcd-data-")
    return EtcdProcess(data_dir, *args)


def start_pier_server(data_dir, *args):
    """`pier serve` on a free loopback port (the gateway tests' launcher)."""
    return pier_servers.start_pier(data_dir, *args)


@pytest.fixture
def etcd_factory(tmp_path_factory):
    """Starts real etcd processes, each with a new data directory; stops them afterwards."""
    started = []

    def start(*args):
        server = start_etcd(str(tmp_path_factory.mktemp("etcd") / "data"), *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def pier_etcd_factory(tmp_path_factory):
    """Starts `pier serve` processes, each with a new data directory; stops them afterwards."""
    started = []

    def start(*args, data_dir=None):
        server = start_pier_server(data_dir or tmp_path_factory.mktemp("pier-data"), *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class EtcdClient:
    """grpcio stubs for every etcd service on one channel."""

    def __init__(self, address):
        self.address = address
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ])
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.watch = rpc_pb2_grpc.WatchStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.cluster = rpc_pb2_grpc.ClusterStub(self.channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(self.channel)
        self.auth = rpc_pb2_grpc.AuthStub(self.channel)

    def close(self):
        self.channel.close()


class WatchStream:
    """A Watch call fed from a queue, with the responses collected by a reader thread."""

    def __init__(self, client):
        import queue
        self._requests = queue.Queue()
        self.responses = []
        self._cond = threading.Condition()
        self.error = None

        def request_iter():
            while True:
                item = self._requests.get()
                if item is None:
                    return
                yield item

        self.call = client.watch.Watch(request_iter())

        def read():
            try:
                for response in self.call:
                    with self._cond:
                        self.responses.append(response)
                        self._cond.notify_all()
            except grpc.RpcError as error:
                with self._cond:
                    self.error = error
                    self._cond.notify_all()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def send(self, request):
        self._requests.put(request)

    def wait_for(self, predicate, timeout=10.0):
        """Waits until predicate(responses) is true; returns the responses."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.responses):
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    break
                self._cond.wait(left)
            return list(self.responses)

    def close(self):
        self._requests.put(None)
        self.call.cancel()
        self._reader.join(5)


def etcdctl(endpoint, *args, stdin=None, timeout=30, env=None):
    """Runs etcdctl (API v3) against an endpoint; returns (exit code, stdout, stderr)."""
    full_env = dict(os.environ)
    full_env["ETCDCTL_API"] = "3"
    full_env.update(env or {})
    result = subprocess.run([ETCDCTL, "--endpoints", endpoint, "--command-timeout=10s", *args],
                            input=stdin, capture_output=True, text=True, timeout=timeout, env=full_env)
    return result.returncode, result.stdout, result.stderr


HEX_ID = re.compile(r"\b[0-9a-f]{14,16}\b")


def normalize_ids(text, ids=None):
    """Replaces hexadecimal lease and member ids (which differ between servers) with stable
    placeholders numbered in order of first appearance."""
    ids = {} if ids is None else ids

    def replace(match):
        value = match.group(0)
        if value not in ids:
            ids[value] = f"<id{len(ids)}>"
        return ids[value]

    return HEX_ID.sub(replace, text)
