# Runs h2load with gRPC-framed unary requests and parses its summary and per-request log.
import os
import re
import struct
import subprocess
import tempfile


def grpc_frame(message):
    """One uncompressed gRPC message: flag byte, 4-byte big-endian length, payload."""
    payload = message.SerializeToString()
    return b"\0" + struct.pack(">I", len(payload)) + payload


def write_body(directory, name, message):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(grpc_frame(message))
    return path


_SIZE = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def run(address, path, body, clients, streams, seconds, warmup=1.0, threads=1, latencies=False):
    """Timed h2load run. Returns dict: rate (req/s), succeeded, failed, bytes (received and sent), elapsed,
    and latencies_us (sorted, when asked) from h2load's per-request log.

    h2load sees HTTP status only, not grpc-status trailers: callers check one request of each
    kind with a real gRPC client first. Every request must come back 2xx here."""
    log = tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log", delete=False)
    log.close()
    argv = ["h2load", "-c", str(clients), "-m", str(streams), "-t", str(threads),
            "-D", f"{int(seconds * 1000)}ms", "--warm-up-time", f"{int(warmup * 1000)}ms", "-d", body,
            "-H", "content-type: application/grpc", "-H", "te: trailers"]
    if latencies:
        argv += ["--log-file", log.name]
    argv.append(f"http://{address}{path}")
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + warmup + 120).stdout
        finished = re.search(r"finished in ([0-9.]+)(m?s), ([0-9.]+) req/s", out)
        counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed,"
                           r" (\d+) errored, (\d+) timeout", out)
        codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        traffic = re.search(r"traffic: \S+ \((\d+)\) total, \S+ \((\d+)\) headers.*?, \S+ \((\d+)\) data", out)
        if not finished or not counts:
            raise RuntimeError(f"unexpected h2load output:\n{out}")
        # "finished in" counts the warm-up too; the rate and the counts cover the measured part only.
        elapsed = int(counts.group(4)) / float(finished.group(3)) if float(finished.group(3)) else float(seconds)
        result = {
            "rate": float(finished.group(3)),
            "succeeded": int(counts.group(4)),
            "failed": sum(int(counts.group(i)) for i in (5, 6, 7)),
            # The status counters include warm-up responses, so only their non-2xx part is looked at.
            "non2xx": sum(int(codes.group(i)) for i in (2, 3, 4)) if codes else 0,
            "bytes": int(traffic.group(1)) if traffic else 0,
            "elapsed": elapsed,
        }
        if result["failed"] or result["non2xx"]:
            raise RuntimeError(f"h2load against {address}{path}: not every request succeeded with 2xx:\n{out}")
        if not result["succeeded"]:
            # Requests slower than the whole timed window: no figure rather than a false zero.
            result["rate"] = float("nan")
        if latencies:
            values = []
            with open(log.name) as f:
                for line in f:
                    parts = line.split("\t")
                    if len(parts) >= 3 and parts[1].startswith("2"):
                        values.append(int(parts[2]))
            values.sort()
            result["latencies_us"] = values
        return result
    finally:
        os.unlink(log.name)
