"""Builds the Swift products once and runs them as child processes on free loopback ports."""
import os
import re
import signal
import subprocess
import threading

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LISTENING = re.compile(r"listening on (\S+):(\d+)")

_built = {}
_build_lock = threading.Lock()


def bin_path():
    """The directory SwiftPM builds into (debug unless PIER_BUILD_CONFIG says otherwise).

    PIER_BIN_DIR names a directory of already built executables instead."""
    if os.environ.get("PIER_BIN_DIR"):
        return os.environ["PIER_BIN_DIR"]
    config = os.environ.get("PIER_BUILD_CONFIG", "debug")
    out = subprocess.run(["swift", "build", "-c", config, "--show-bin-path"], cwd=REPO,
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def build(product):
    """Builds one product (once per process) and returns the executable's path.

    PIER_SKIP_BUILD=1 or PIER_BIN_DIR trusts an earlier build (scripts/test builds first)."""
    with _build_lock:
        if product in _built:
            return _built[product]
        config = os.environ.get("PIER_BUILD_CONFIG", "debug")
        if os.environ.get("PIER_SKIP_BUILD") != "1" and not os.environ.get("PIER_BIN_DIR"):
            result = subprocess.run(["swift", "build", "-c", config, "--product", product], cwd=REPO,
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"swift build --product {product} failed:\n"
                                   f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        path = os.path.join(bin_path(), product)
        if not os.path.exists(path):
            raise RuntimeError(f"{path} does not exist after building {product}")
        _built[product] = path
        return path


class ServerProcess:
    """A server started on 127.0.0.1:0 that prints `listening on HOST:PORT` once bound."""

    def __init__(self, argv, cwd=None, startup_timeout=60.0, env=None):
        self.argv = list(argv)
        self.proc = subprocess.Popen(self.argv, cwd=cwd or REPO, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.stderr_lines = []
        self.stdout_lines = []
        self.host = None
        self.port = None
        ready = threading.Event()

        def read_stdout():
            for line in self.proc.stdout:
                self.stdout_lines.append(line)
                match = LISTENING.search(line)
                if match and self.port is None:
                    self.host, self.port = match.group(1), int(match.group(2))
                    ready.set()
            ready.set()

        def read_stderr():
            # Drained continuously so a chatty server never blocks on a full pipe.
            for line in self.proc.stderr:
                if len(self.stderr_lines) < 2000:
                    self.stderr_lines.append(line)

        threading.Thread(target=read_stdout, daemon=True).start()
        threading.Thread(target=read_stderr, daemon=True).start()
        if not ready.wait(startup_timeout) or self.port is None:
            self.kill()
            raise RuntimeError(f"{self.argv[0]} did not report its port; stderr:\n{self.stderr()}")

    @property
    def pid(self):
        return self.proc.pid

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def stderr(self):
        return "".join(self.stderr_lines[-200:])

    def alive(self):
        return self.proc.poll() is None

    def rss_bytes(self):
        """Resident memory from /proc (VmRSS), as a person would read it with ps."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def signal(self, number=signal.SIGTERM):
        if self.alive():
            self.proc.send_signal(number)

    def wait(self, timeout):
        """Waits for exit; returns the exit code, or None if still running after `timeout`."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=20.0):
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns the exit code."""
        if not self.alive():
            return self.proc.returncode
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self.kill()
        return code

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)


def start_test_server(*args, **kwargs):
    """pier-test-server (Health + the test-only Echo service) on a free loopback port."""
    binary = build("pier-test-server")
    return ServerProcess([binary, "--listen", "127.0.0.1:0", *args], **kwargs)


def start_pier(data_dir, *args, **kwargs):
    """`pier serve` on a free loopback port with its own data directory."""
    binary = build("pier")
    return ServerProcess([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *args],
                         **kwargs)
