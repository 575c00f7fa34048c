"""Starts the servers the tests talk to: `pier serve` and a real etcd, on free loopback ports."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import grpc

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
LISTENING = re.compile(r"listening on (\S+):(\d+)")
ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def pier_binary():
    """$PIER_BIN (relative to the current directory), else the debug build in the repository."""
    if os.environ.get("PIER_BIN"):
        return os.path.abspath(os.environ["PIER_BIN"])
    return os.path.join(REPO, ".build", "debug", "pier")


class PierServer:
    """`pier serve` on 127.0.0.1:0 with a temporary data directory; ready once it prints its port."""

    def __init__(self, startup_timeout=60.0):
        binary = pier_binary()
        if not os.path.exists(binary):
            raise RuntimeError(f"{binary} does not exist: build it (swift build --product pier) or set PIER_BIN")
        self.data_dir = tempfile.mkdtemp(prefix="pier-client-test-")
        self.proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.stderr_lines = []
        self.address = None
        ready = threading.Event()

        def read_stdout():
            for line in self.proc.stdout:
                match = LISTENING.search(line)
                if match and self.address is None:
                    self.address = f"{match.group(1)}:{match.group(2)}"
                    ready.set()
            ready.set()

        def read_stderr():
            # Drained so a chatty server never blocks on a full pipe.
            for line in self.proc.stderr:
                if len(self.stderr_lines) < 2000:
                    self.stderr_lines.append(line)

        threading.Thread(target=read_stdout, daemon=True).start()
        threading.Thread(target=read_stderr, daemon=True).start()
        if not ready.wait(startup_timeout) or self.address is None:
            self.stop()
            raise RuntimeError(f"pier did not report its port; stderr:\n{''.join(self.stderr_lines[-50:])}")

    def stop(self, timeout=20.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return self.proc.returncode


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def etcd_available():
    return os.path.exists(ETCD)


class EtcdServer:
    """A single-member etcd on loopback ports with a temporary data directory."""

    def __init__(self, startup_timeout=30.0):
        from pier._proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

        self.dir = tempfile.mkdtemp(prefix="etcd-client-test-")
        client_port, peer_port = free_port(), free_port()
        self.address = f"127.0.0.1:{client_port}"
        peer, client = f"http://127.0.0.1:{peer_port}", f"http://{self.address}"
        self.log = open(os.path.join(self.dir, "etcd.log"), "w")
        self.proc = subprocess.Popen(
            [ETCD, "--name", "default", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"default={peer}", "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_timeout
        with grpc.insecure_channel(self.address) as channel:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"etcd exited with {self.proc.returncode}")
                try:
                    # Ready once it has a leader and serves a linearizable read.
                    rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=b"\0"), timeout=2)
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("etcd did not become ready")
                    time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode
