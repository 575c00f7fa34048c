#!/usr/bin/env python3
"""Seeded, time-bounded fuzzing of the gRPC gateway over loopback: valid-ish HTTP/2 + gRPC traffic,
then mutated (bit flips, truncation, random frames and lengths, random protobuf bytes). Afterwards
the server must be alive, answer a health check, and have kept its memory bounded.

Usage: fuzz_gateway.py [--seconds 60] [--seed N] [--workers 4] [--address HOST:PORT --pid PID]
Without --address it starts pier-test-server itself. The seed is printed; rerun with it to
replay the same inputs (thread interleaving aside)."""
import argparse
import os
import random
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))

import grpc  # noqa: E402
import hpack  # noqa: E402

from h2_wire import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING, PREFACE,  # noqa: E402
                     PRIORITY, RST_STREAM, SETTINGS, WINDOW_UPDATE, frame, grpc_message)
from pier._proto.grpc.health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from pier._proto.pier.testing.v1 import echo_pb2  # noqa: E402

MIB = 1024 * 1024

METHODS = [
    "/pier.testing.v1.Echo/Unary", "/pier.testing.v1.Echo/ServerStream", "/pier.testing.v1.Echo/ClientStream",
    "/pier.testing.v1.Echo/Bidi", "/pier.testing.v1.Echo/Slow", "/pier.testing.v1.Echo/Firehose",
    "/pier.testing.v1.Echo/Stats", "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
]


# --- generators -------------------------------------------------------------------------------

def random_bytes(rng, limit):
    return rng.randbytes(rng.randint(0, limit))


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def random_protobuf(rng, depth=0):
    """Protobuf-shaped bytes: random field numbers and wire types, sometimes nested, sometimes lying."""
    out = bytearray()
    for _ in range(rng.randint(0, 8)):
        field = rng.choice([1, 2, 3, 4, 5, rng.randint(1, 2**29 - 1)])
        wire = rng.choice([0, 1, 2, 5, rng.randint(0, 7)])
        out += varint(field << 3 | wire)
        if wire == 0:
            out += varint(rng.choice([0, 1, 127, 128, 2**32 - 1, 2**64 - 1, rng.getrandbits(64)]))
        elif wire == 1:
            out += rng.randbytes(8)
        elif wire == 5:
            out += rng.randbytes(4)
        elif wire == 2:
            body = random_protobuf(rng, depth + 1) if depth < 3 and rng.random() < 0.3 else random_bytes(rng, 64)
            declared = len(body) if rng.random() < 0.8 else rng.randint(0, 2**32)
            out += varint(declared) + body
        else:
            out += random_bytes(rng, 8)
    return bytes(out)


def valid_request(rng, path):
    if path.startswith("/grpc.health"):
        service = rng.choice(["", "pier.testing.v1.Echo", "nope", random_bytes(rng, 8).hex()])
        return health_pb2.HealthCheckRequest(service=service).SerializeToString()
    if path.endswith("/Stats"):
        return b""
    return echo_pb2.EchoRequest(
        payload=random_bytes(rng, 2048),
        # Kept small: the fuzzer looks for crashes and leaks, not for long calls.
        count=rng.randint(0, 20),
        delay_ms=rng.choice([0, 0, 0, 1, 5, 20]),
        fail_code=rng.choice([0, 0, 0, rng.randint(0, 20)]),
        error_message=rng.choice(["", "boom", "ünïcode %", random_bytes(rng, 16).hex()]),
    ).SerializeToString()


def request_headers(rng, path):
    fields = [(":method", rng.choice(["POST"] * 8 + ["GET", "PUT", ""])),
              (":scheme", rng.choice(["http"] * 8 + ["https", "ftp"])),
              (":path", path),
              (":authority", "localhost"),
              ("content-type", rng.choice(["application/grpc"] * 6 + ["application/grpc+proto", "text/plain", ""])),
              ("te", rng.choice(["trailers"] * 8 + ["gzip", ""]))]
    if rng.random() < 0.3:
        fields.append(("grpc-timeout", rng.choice(["1S", "100m", "5n", "99999999H", "1x", "", "-1S"])))
    if rng.random() < 0.2:
        fields.append(("grpc-encoding", rng.choice(["identity", "gzip", "snappy", "x"])))
    for _ in range(rng.randint(0, 4)):
        key = rng.choice(["x-a", "x-b-bin", "x-trace-bin", "grpc-x", "x-" + random_bytes(rng, 4).hex()])
        value = rng.choice(["v", "AAEC", "!!notbase64", random_bytes(rng, 32).hex(), "x" * rng.randint(0, 3000)])
        fields.append((key, value))
    if rng.random() < 0.1:
        rng.shuffle(fields)  # pseudo-headers after regular ones are malformed
    return fields


def random_frame(rng, stream_id):
    kind = rng.choice([DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, 5, PING, GOAWAY, WINDOW_UPDATE,
                       CONTINUATION, rng.randint(10, 255)])
    flags = rng.getrandbits(8)
    sid = rng.choice([0, stream_id, stream_id + 2, rng.getrandbits(31)])
    payload = random_bytes(rng, rng.choice([0, 8, 64, 1024, 17000]))
    return frame(kind, flags, sid, payload)


def conversation(rng, encoder):
    """A mostly valid client conversation: preface, SETTINGS, a few calls, odd control frames."""
    out = [PREFACE]
    params = b""
    for _ in range(rng.randint(0, 3)):
        ident = rng.choice([1, 2, 3, 4, 5, 6, rng.randint(0, 20)])
        value = rng.choice([0, 1, 100, 16384, 65535, 2**31 - 1, rng.getrandbits(32)])
        params += struct.pack(">HI", ident, value)
    out.append(frame(SETTINGS, 0, 0, params))
    stream_id = 1
    for _ in range(rng.randint(1, 6)):
        path = rng.choice(METHODS + ["/unknown.Service/M", "/pier.testing.v1.Echo/Nope", "garbage", "/"])
        block = encoder.encode(request_headers(rng, path))
        if rng.random() < 0.15 and len(block) > 4:
            cut = rng.randint(1, len(block) - 1)
            out.append(frame(HEADERS, 0, stream_id, block[:cut]))
            out.append(frame(CONTINUATION, END_HEADERS, stream_id, block[cut:]))
        else:
            out.append(frame(HEADERS, END_HEADERS, stream_id, block))
        messages = []
        for _ in range(rng.choice([0, 1, 1, 1, 2, 5])):
            body = valid_request(rng, path) if rng.random() < 0.7 else random_protobuf(rng)
            flag = 0 if rng.random() < 0.9 else rng.choice([1, 2, 255])
            declared = None if rng.random() < 0.9 else rng.choice([0, len(body) + 1, 2**32 - 1, 5 * MIB])
            messages.append(grpc_message(body, flag, declared))
        data = b"".join(messages)
        # Split the body across DATA frames of random sizes (sometimes 1 byte each).
        pieces = []
        while data:
            size = rng.choice([1, 3, 100, 16384])
            pieces.append(data[:size])
            data = data[size:]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            out.append(frame(DATA, END_STREAM if last and rng.random() < 0.9 else 0, stream_id, piece))
        if not pieces and rng.random() < 0.9:
            out.append(frame(DATA, END_STREAM, stream_id, b""))
        if rng.random() < 0.1:
            out.append(frame(RST_STREAM, 0, stream_id, struct.pack(">I", rng.randint(0, 13))))
        if rng.random() < 0.2:
            out.append(frame(PING, 0, 0, rng.randbytes(8)))
        if rng.random() < 0.2:
            out.append(frame(WINDOW_UPDATE, 0, rng.choice([0, stream_id]), struct.pack(">I", rng.randint(0, 2**31))))
        if rng.random() < 0.1:
            out.append(frame(SETTINGS, ACK, 0))
        stream_id += 2
    if rng.random() < 0.3:
        out.append(random_frame(rng, stream_id))
    return out


def mutate(rng, chunks):
    """Applies a few byte-level mutations to the serialized conversation."""
    strategy = rng.random()
    if strategy < 0.35:
        return chunks  # valid-ish traffic exercises the happy paths too
    data = bytearray(b"".join(chunks))
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        if not data:
            break
        if choice < 0.35:
            position = rng.randrange(len(data))
            data[position] ^= 1 << rng.randrange(8)
        elif choice < 0.5:
            position = rng.randrange(len(data))
            data[position] = rng.getrandbits(8)
        elif choice < 0.6:
            del data[rng.randrange(len(data)):]
        elif choice < 0.75:
            position = rng.randrange(len(data))
            data[position:position] = random_frame(rng, rng.choice([1, 3, 5]))
        elif choice < 0.85:
            start = rng.randrange(len(data))
            end = min(len(data), start + rng.randint(1, 64))
            data[start:start] = data[start:end] * rng.randint(1, 4)
        else:
            position = rng.randrange(len(data))
            del data[position:position + rng.randint(1, 16)]
    return [bytes(data)]


# --- running -----------------------------------------------------------------------------------------

def exchange(address, chunks, rng):
    """Sends a conversation (in random-sized writes) and reads the reply briefly."""
    host, port = address.rsplit(":", 1)
    try:
        sock = socket.create_connection((host, int(port)), timeout=2)
    except OSError:
        return "connect-failed"
    try:
        sock.settimeout(0.5)
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                size = rng.choice([len(view), 1, 7, 512, 4096])
                sock.sendall(view[:size])
                view = view[size:]
        deadline = time.monotonic() + rng.choice([0.05, 0.2, 0.5])
        while time.monotonic() < deadline:
            try:
                if not sock.recv(65536):
                    return "closed"
            except socket.timeout:
                break
        return "done"
    except (OSError, socket.timeout):
        return "reset"
    finally:
        try:
            if rng.random() < 0.3:
                # An abortive close (RST) instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError:
            pass


# How each method is called through grpcio: (request streaming, response streaming).
METHOD_SHAPES = {
    "/pier.testing.v1.Echo/Unary": (False, False), "/pier.testing.v1.Echo/ServerStream": (False, True),
    "/pier.testing.v1.Echo/ClientStream": (True, False), "/pier.testing.v1.Echo/Bidi": (True, True),
    "/pier.testing.v1.Echo/Slow": (False, False), "/pier.testing.v1.Echo/Firehose": (False, True),
    "/pier.testing.v1.Echo/Stats": (False, False), "/grpc.health.v1.Health/Check": (False, False),
    "/grpc.health.v1.Health/Watch": (False, True),
}


def grpc_call(channel, rng):
    """One call through a real gRPC client with random protobuf bytes; returns the status name."""
    path = rng.choice(list(METHOD_SHAPES))
    streaming_request, streaming_response = METHOD_SHAPES[path]
    bodies = [valid_request(rng, path) if rng.random() < 0.5 else random_protobuf(rng)
              for _ in range(rng.randint(1, 4) if streaming_request else 1)]
    timeout = rng.choice([0.05, 0.3, 1.0])
    try:
        if streaming_request and streaming_response:
            for _ in channel.stream_stream(path)(iter(bodies), timeout=timeout):
                pass
        elif streaming_request:
            channel.stream_unary(path)(iter(bodies), timeout=timeout)
        elif streaming_response:
            for _ in channel.unary_stream(path)(bodies[0], timeout=timeout):
                pass
        else:
            channel.unary_unary(path)(bodies[0], timeout=timeout)
        return "OK"
    except grpc.RpcError as error:
        return error.code().name


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def health_check(address, timeout=10):
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def fuzz(address, pid, seconds, seed, workers=4, rss_limit=128 * MIB, alive=lambda: True, log=print):
    """Runs the fuzzer; returns a dict of counts. Raises AssertionError on a failure."""
    log(f"fuzz seed: {seed}  (replay with --seed {seed}); {seconds}s, {workers} workers, target {address}")
    assert health_check(address), "server not serving before fuzzing"
    baseline = rss_bytes(pid)
    peak = baseline
    stop_at = time.monotonic() + seconds
    counts = {}
    lock = threading.Lock()
    failure = []

    def worker(index):
        rng = random.Random(seed * 1000 + index)
        encoder = hpack.Encoder()
        local = {}
        while time.monotonic() < stop_at and not failure:
            # A fresh encoder now and then: mutated blocks desynchronise the HPACK tables anyway.
            if rng.random() < 0.5:
                encoder = hpack.Encoder()
            try:
                chunks = mutate(rng, conversation(rng, encoder))
            except Exception as error:  # a generator bug must not look like a server bug
                failure.append(f"generator error: {error!r}")
                return
            outcome = exchange(address, chunks, rng)
            local[outcome] = local.get(outcome, 0) + 1
        with lock:
            for key, value in local.items():
                counts[key] = counts.get(key, 0) + value

    def grpc_worker():
        # Random protobuf bytes through a real gRPC client: the decode paths of every method.
        rng = random.Random(seed * 1000 + 999)
        local = {}
        with grpc.insecure_channel(address) as channel:
            while time.monotonic() < stop_at and not failure:
                outcome = "grpc-" + grpc_call(channel, rng)
                local[outcome] = local.get(outcome, 0) + 1
        with lock:
            for key, value in local.items():
                counts[key] = counts.get(key, 0) + value

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
    threads.append(threading.Thread(target=grpc_worker, daemon=True))
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        time.sleep(0.5)
        if not alive():
            failure.append("server process exited during fuzzing")
            break
        peak = max(peak, rss_bytes(pid))
        if peak - baseline > rss_limit:
            failure.append(f"server RSS grew by {(peak - baseline) / MIB:.0f} MiB (limit {rss_limit / MIB:.0f})")
            break
    for thread in threads:
        thread.join(timeout=10)
    assert not failure, f"{failure[0]} (seed {seed})"
    assert alive(), f"server process exited (seed {seed})"
    assert health_check(address), f"server not serving after fuzzing (seed {seed})"
    final = rss_bytes(pid)
    log(f"fuzz done: {sum(counts.values())} exchanges {dict(sorted(counts.items()))}; "
        f"RSS {baseline / MIB:.1f} MiB -> peak {peak / MIB:.1f} MiB, now {final / MIB:.1f} MiB (seed {seed})")
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rss-limit-mib", type=int, default=128)
    parser.add_argument("--address", help="fuzz a running server instead of starting pier-test-server")
    parser.add_argument("--pid", type=int, help="pid of the server at --address (for its memory)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    if args.address:
        if not args.pid:
            parser.error("--address needs --pid")
        fuzz(args.address, args.pid, args.seconds, seed, args.workers, args.rss_limit_mib * MIB,
             alive=lambda: os.path.exists(f"/proc/{args.pid}"))
        return 0
    from pier_servers import start_test_server
    server = start_test_server()
    try:
        fuzz(server.address, server.pid, args.seconds, seed, args.workers, args.rss_limit_mib * MIB,
             alive=server.alive)
    finally:
        code = server.stop()
    if code != 0:
        print(f"server exited with {code} on SIGTERM; stderr:\n{server.stderr()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
