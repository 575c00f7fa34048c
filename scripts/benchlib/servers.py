# Starts and stops Pier and etcd 3.4 on loopback for benchmarks, and reads their /proc figures.
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))

import grpc  # noqa: E402
from pier._proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pier_binary(path=None):
    """The given binary, else the release build, building it only when it is missing."""
    if path:
        return os.path.abspath(path)
    default = os.path.join(REPO, ".build", "release", "pier")
    if not os.access(default, os.X_OK):
        print("building pier (release)...", file=sys.stderr, flush=True)
        subprocess.run(["swift", "build", "-c", "release", "--product", "pier"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
        bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=REPO, check=True,
                                 capture_output=True, text=True).stdout.strip()
        default = os.path.join(bin_dir, "pier")
    return default


def wait_kv_ready(address, timeout=60):
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        while True:
            try:
                kv.Range(rpc_pb2.RangeRequest(key=b"\0"), timeout=2)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{address} did not answer Range within {timeout}s")
                time.sleep(0.1)


class Server:
    """A child server process; `address` is host:port of its gRPC listener."""

    def __init__(self, name, process, address, log_path):
        self.name, self.process, self.address, self.log_path = name, process, address, log_path

    @property
    def pid(self):
        return self.process.pid

    def status(self):
        """VmRSS, VmHWM, RssAnon, RssFile in KiB from /proc/PID/status (empty once it has exited)."""
        figures = {}
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                        figures[key] = int(rest.split()[0])
        except FileNotFoundError:
            pass
        return figures

    def rss_mib(self):
        return self.status().get("VmRSS", 0) / 1024

    def open_fds(self):
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except FileNotFoundError:
            return 0

    def alive(self):
        return self.process.poll() is None

    def stop(self, timeout=20):
        """SIGTERM (graceful), then SIGKILL if it does not exit in time. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return ""


def start_pier(binary, data_dir, extra=("--log-level", "warning")):
    os.makedirs(data_dir, exist_ok=True)
    log_path = os.path.join(os.path.dirname(data_dir.rstrip("/")), os.path.basename(data_dir) + ".log")
    log = open(log_path, "w")
    # Warnings only, as etcd runs with --log-level error: per-call logging is not what is measured.
    # stdout goes to a file, not a pipe nobody drains, so a chatty server can never block on it.
    process = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir, *extra],
                               stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(log_path, errors="replace") as f:
            match = re.search(r"listening on (\S+):(\d+)", f.read())
        if match:
            address = f"{match.group(1)}:{match.group(2)}"
            wait_kv_ready(address)
            return Server("pier", process, address, log_path)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    with open(log_path, errors="replace") as f:
        raise RuntimeError(f"pier did not start:\n{f.read()[-2000:]}")


def start_etcd(data_dir, binary=None):
    binary = binary or shutil.which("etcd") or "/usr/bin/etcd"
    client, peer = free_port(), free_port()
    address = f"127.0.0.1:{client}"
    log_path = data_dir.rstrip("/") + ".log"
    log = open(log_path, "w")
    process = subprocess.Popen([binary, "--name", "bench", "--data-dir", data_dir,
                                "--listen-client-urls", f"http://{address}", "--advertise-client-urls", f"http://{address}",
                                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                                "--initial-cluster", f"bench=http://127.0.0.1:{peer}", "--log-level", "error"],
                               stdout=log, stderr=subprocess.STDOUT)
    log.close()
    wait_kv_ready(address)
    return Server("etcd", process, address, log_path)


def etcd_version(binary=None):
    binary = binary or shutil.which("etcd") or "/usr/bin/etcd"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"etcd Version: (\S+)", out)
    return match.group(1) if match else "unknown"
