"""The gateway under hostile or broken peers: bad HTTP/2, bad gRPC framing, floods, limits, slow readers.

Each test checks what an operator would: the bad connection gets the error the protocol asks
for, the server stays up and answers health checks, and its memory stays bounded."""
import gzip
import random
import socket
import struct
import time

import grpc
import hpack
import pytest

import h2.config
import h2.connection
import h2.events

from h2_wire import (ACK, CONTINUATION, COMPRESSION_ERROR, DATA, END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM,
                     FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, GOAWAY, HEADERS, PING, PREFACE, PROTOCOL_ERROR,
                     REFUSED_STREAM, RST_STREAM, SETTINGS, WINDOW_UPDATE, RawConnection, frame, grpc_message,
                     grpc_status, request_headers, settings)
from pier._proto.grpc.health.v1 import health_pb2, health_pb2_grpc
from pier._proto.pier.testing.v1 import echo_pb2, echo_pb2_grpc

MIB = 1024 * 1024
# Growth of the server's resident memory allowed during one abuse test. Unbounded buffering in
# these tests would take hundreds of MiB; the bound leaves room for allocator slack.
RSS_GROWTH_LIMIT = 96 * MIB

UNARY = "/pier.testing.v1.Echo/Unary"
CHECK = "/grpc.health.v1.Health/Check"


def assert_serving(server):
    assert server.alive(), f"server exited; stderr:\n{server.stderr()}"
    with grpc.insecure_channel(server.address) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def warmed_rss(server):
    """Resident memory after a few calls, so that lazily built state is already counted."""
    with grpc.insecure_channel(server.address) as ch:
        stub = echo_pb2_grpc.EchoStub(ch)
        for _ in range(20):
            stub.Unary(echo_pb2.EchoRequest(payload=b"w" * 1000), timeout=10)
        list(stub.ServerStream(echo_pb2.EchoRequest(payload=b"w", count=50), timeout=10))
    return server.rss_bytes()


def assert_memory_bounded(server, baseline, what):
    grown = server.rss_bytes() - baseline
    assert grown < RSS_GROWTH_LIMIT, f"{what}: server RSS grew by {grown / MIB:.1f} MiB"


@pytest.fixture
def server(test_server_factory):
    """A fresh server per test: a broken connection or a flood never leaks into the next test."""
    return test_server_factory()


def h2_client(address):
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def h2_exchange(sock, conn, stream_id, timeout=10.0):
    """Reads h2 events until the stream ends; returns (response headers, body, trailers)."""
    headers, body, trailers = None, b"", None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        for event in conn.receive_data(chunk):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                headers = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
            elif isinstance(event, h2.events.TrailersReceived) and event.stream_id == stream_id:
                trailers = dict(event.headers)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and event.stream_id == stream_id:
                sock.sendall(conn.data_to_send())
                return headers, body, trailers
        sock.sendall(conn.data_to_send())
    return headers, body, trailers


# --- HTTP semantics ------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/grpcfoo", None])
def test_wrong_content_type_is_415(server, content_type):
    sock, conn = h2_client(server.address)
    try:
        fields = request_headers(UNARY, content_type=content_type)
        conn.send_headers(1, fields, end_stream=False)
        conn.send_data(1, grpc_message(b""), end_stream=True)
        sock.sendall(conn.data_to_send())
        headers, _, _ = h2_exchange(sock, conn, 1)
    finally:
        sock.close()
    assert headers is not None, "no response headers"
    assert headers[":status"] == "415"
    assert_serving(server)


@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc+proto"])
def test_grpc_content_types_are_accepted(server, content_type):
    sock, conn = h2_client(server.address)
    try:
        conn.send_headers(1, request_headers(UNARY, content_type=content_type))
        conn.send_data(1, grpc_message(echo_pb2.EchoRequest(payload=b"raw").SerializeToString()), end_stream=True)
        sock.sendall(conn.data_to_send())
        headers, body, trailers = h2_exchange(sock, conn, 1)
    finally:
        sock.close()
    assert headers[":status"] == "200"
    assert headers["content-type"].startswith("application/grpc")
    assert trailers["grpc-status"] == "0"
    reply = echo_pb2.EchoResponse.FromString(body[5:])
    assert reply.payload == b"raw"


def test_get_request_is_refused(server):
    sock, conn = h2_client(server.address)
    try:
        conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":path", UNARY),
                              (":authority", "localhost"), ("content-type", "application/grpc")],
                          end_stream=True)
        sock.sendall(conn.data_to_send())
        headers, _, trailers = h2_exchange(sock, conn, 1)
    finally:
        sock.close()
    refused = headers is None or headers[":status"] != "200" or \
        (trailers or headers).get("grpc-status", "0") != "0"
    assert refused, f"GET answered as a call: {headers} {trailers}"
    assert_serving(server)


# --- broken HTTP/2 -------------------------------------------------------------------------------

@pytest.mark.parametrize("opening", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
    bytes(range(256)) * 4,
])
def test_bad_preface_closes_connection(server, opening):
    conn = RawConnection(server.address)
    try:
        conn.try_send(opening)
        # RFC 9113 3.4: an invalid preface is a PROTOCOL_ERROR; GOAWAY may be omitted, closing may not.
        code = conn.goaway_error(timeout=5)
        assert code in (None, PROTOCOL_ERROR), f"GOAWAY {code}"
        assert conn.wait_closed(timeout=5), "connection left open after a bad preface"
    finally:
        conn.close()
    assert_serving(server)


def test_first_frame_not_settings_is_protocol_error(server):
    conn = RawConnection(server.address)
    try:
        conn.send(PREFACE + frame(PING, 0, 0, b"12345678"))
        assert conn.goaway_error() == PROTOCOL_ERROR
        assert conn.wait_closed()
    finally:
        conn.close()
    assert_serving(server)


def test_garbage_after_preface_is_protocol_error(server):
    conn = RawConnection(server.address)
    try:
        conn.send(PREFACE + settings() + b"\xde\xad\xbe\xef" * 8)
        code = conn.goaway_error()
        assert code in (PROTOCOL_ERROR, FRAME_SIZE_ERROR), f"GOAWAY {code}"
        assert conn.wait_closed()
    finally:
        conn.close()
    assert_serving(server)


MALFORMED = {
    "data-on-stream-0": (frame(DATA, 0, 0, b"x"), PROTOCOL_ERROR),
    "headers-on-even-stream": (None, PROTOCOL_ERROR),  # built with a live HPACK encoder below
    "ping-on-a-stream": (frame(PING, 0, 1, b"12345678"), PROTOCOL_ERROR),
    "ping-wrong-length": (frame(PING, 0, 0, b"1234567"), FRAME_SIZE_ERROR),
    "settings-wrong-length": (frame(SETTINGS, 0, 0, b"\x00\x01\x00"), FRAME_SIZE_ERROR),
    "settings-ack-with-payload": (frame(SETTINGS, ACK, 0, b"\x00\x01\x00\x00\x10\x00"), FRAME_SIZE_ERROR),
    "settings-on-a-stream": (frame(SETTINGS, 0, 3, b""), PROTOCOL_ERROR),
    "enable-push-2": (settings(enable_push=2), PROTOCOL_ERROR),
    "window-too-large": (settings(initial_window_size=2**31), FLOW_CONTROL_ERROR),
    "max-frame-size-too-small": (settings(max_frame_size=100), PROTOCOL_ERROR),
    "zero-window-update-on-connection": (frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"), PROTOCOL_ERROR),
    "continuation-without-headers": (frame(CONTINUATION, END_HEADERS, 1, b"\x82"), PROTOCOL_ERROR),
    "rst-stream-on-idle-stream": (frame(RST_STREAM, 0, 5, b"\x00\x00\x00\x08"), PROTOCOL_ERROR),
    "data-on-idle-stream": (frame(DATA, 0, 7, b"x"), PROTOCOL_ERROR),
    "garbage-hpack": (frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff\xff\xff\xff\xff"), COMPRESSION_ERROR),
    "oversized-frame": (frame(DATA, 0, 1, b"x" * 20000), FRAME_SIZE_ERROR),
    "push-promise-from-client": (frame(5, END_HEADERS, 1, b"\x00\x00\x00\x02\x82"), PROTOCOL_ERROR),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_frame_gets_goaway(server, name):
    payload, expected = MALFORMED[name]
    conn = RawConnection(server.address)
    try:
        conn.handshake()
        if payload is None:
            conn.headers(2, request_headers(UNARY))
        else:
            conn.send(payload)
        code = conn.goaway_error()
        assert code == expected, f"{name}: expected GOAWAY {expected}, got {code}"
        assert conn.wait_closed(), f"{name}: connection left open after GOAWAY"
    finally:
        conn.close()
    assert_serving(server)


# --- broken gRPC framing ---------------------------------------------------------------------------

def raw_call(server, path, body_chunks, extra_headers=(), end_stream=True):
    conn = RawConnection(server.address)
    try:
        conn.handshake()
        conn.headers(1, request_headers(path, extra=extra_headers))
        for i, chunk in enumerate(body_chunks):
            last = i == len(body_chunks) - 1
            # Within the default SETTINGS_MAX_FRAME_SIZE (16 KiB).
            pieces = [chunk[j:j + 16384] for j in range(0, len(chunk), 16384)] or [b""]
            for k, piece in enumerate(pieces):
                conn.data(1, piece, end_stream=end_stream and last and k == len(pieces) - 1)
        if not body_chunks and end_stream:
            conn.data(1, b"", end_stream=True)
        return conn.response(1)
    finally:
        conn.close()


def test_truncated_message_is_an_error(server):
    # The prefix announces 100 bytes, 10 arrive, then END_STREAM.
    result = raw_call(server, UNARY, [grpc_message(b"0123456789", declared_length=100)])
    status = grpc_status(result)
    assert status is not None and status != 0, f"truncated message answered with {result}"
    assert_serving(server)


def test_truncated_prefix_is_an_error(server):
    result = raw_call(server, UNARY, [b"\x00\x00\x00"])
    status = grpc_status(result)
    assert status is not None and status != 0
    assert_serving(server)


def test_unary_without_request_message_is_an_error(server):
    result = raw_call(server, UNARY, [])
    status = grpc_status(result)
    assert status is not None and status != 0
    assert_serving(server)


def test_compressed_with_unsupported_encoding_is_unimplemented(server):
    payload = echo_pb2.EchoRequest(payload=b"z").SerializeToString()
    result = raw_call(server, UNARY, [grpc_message(payload, flag=1)],
                      extra_headers=[("grpc-encoding", "x-unknown-codec")])
    assert grpc_status(result) == grpc.StatusCode.UNIMPLEMENTED.value[0], result
    assert_serving(server)


def test_gzip_bomb_is_resource_exhausted(server):
    # 64 MiB of zeros in a payload field, gzip-compressed to ~64 KiB: the inflated message
    # exceeds the 4 MiB limit, and the server must stop inflating there.
    baseline = warmed_rss(server)
    inflated = echo_pb2.EchoRequest(payload=bytes(64 * MIB)).SerializeToString()
    result = raw_call(server, UNARY, [grpc_message(gzip.compress(inflated), flag=1)],
                      extra_headers=[("grpc-encoding", "gzip")])
    assert grpc_status(result) == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], result
    assert_memory_bounded(server, baseline, "gzip bomb")
    assert_serving(server)


def test_corrupt_gzip_is_refused(server):
    payload = bytearray(gzip.compress(echo_pb2.EchoRequest(payload=b"x" * 1000).SerializeToString()))
    payload[len(payload) // 2] ^= 0xFF
    result = raw_call(server, UNARY, [grpc_message(bytes(payload), flag=1)],
                      extra_headers=[("grpc-encoding", "gzip")])
    assert grpc_status(result) not in (None, 0), result
    assert_serving(server)


def test_compressed_flag_without_encoding_is_refused(server):
    payload = echo_pb2.EchoRequest(payload=b"z").SerializeToString()
    result = raw_call(server, UNARY, [grpc_message(payload, flag=1)])
    assert grpc_status(result) not in (None, 0), result
    assert_serving(server)


def test_unknown_flag_byte_is_refused(server):
    result = raw_call(server, UNARY, [grpc_message(b"", flag=0x80)])
    assert grpc_status(result) not in (None, 0), result
    assert_serving(server)


def test_declared_length_over_limit_is_resource_exhausted(server):
    # Only the prefix is sent: the server must refuse from the length alone, without waiting.
    result = raw_call(server, UNARY, [grpc_message(b"", declared_length=0xFFFFFFFF)], end_stream=False)
    assert grpc_status(result) == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], result
    assert_serving(server)


def test_malformed_protobuf_is_invalid_argument(server):
    result = raw_call(server, UNARY, [grpc_message(b"\x0a\x05ab")])
    assert grpc_status(result) == grpc.StatusCode.INVALID_ARGUMENT.value[0], result
    assert_serving(server)


def test_bad_grpc_timeout_is_refused(server):
    result = raw_call(server, UNARY, [grpc_message(b"")], extra_headers=[("grpc-timeout", "soon")])
    assert grpc_status(result) not in (None, 0), result
    assert_serving(server)


def test_message_split_into_one_byte_data_frames(server):
    # Tiny frames are legal: a 20 KB message sent one byte per DATA frame still arrives whole.
    payload = bytes(random.Random(7).getrandbits(8) for _ in range(20_000))
    body = grpc_message(echo_pb2.EchoRequest(payload=payload).SerializeToString())
    conn = RawConnection(server.address)
    try:
        conn.handshake()
        conn.headers(1, request_headers(UNARY))
        conn.send(b"".join(frame(DATA, 0, 1, body[i:i + 1]) for i in range(len(body))))
        conn.data(1, b"", end_stream=True)
        result = conn.response(1, timeout=30)
    finally:
        conn.close()
    assert grpc_status(result) == 0, result
    assert echo_pb2.EchoResponse.FromString(result["data"][5:]).payload == payload


# --- floods --------------------------------------------------------------------------------------

def flood(server, build_frames, seconds=3.0, handshake=True):
    """Sends frames for up to `seconds` (or until the server closes), never reading."""
    conn = RawConnection(server.address, timeout=2)
    try:
        if handshake:
            conn.handshake()
        deadline = time.monotonic() + seconds
        for chunk in build_frames(conn):
            if time.monotonic() > deadline or not conn.try_send(chunk):
                break
        conn.drain(timeout=1.0)
        return conn
    finally:
        conn.close()


def test_ping_flood(server):
    baseline = warmed_rss(server)
    ping = frame(PING, 0, 0, b"pingpong") * 1000
    flood(server, lambda conn: (ping for _ in range(200)))
    assert_memory_bounded(server, baseline, "PING flood")
    assert_serving(server)


def test_settings_flood(server):
    baseline = warmed_rss(server)
    block = settings(header_table_size=4096, initial_window_size=65535) * 1000
    flood(server, lambda conn: (block for _ in range(200)))
    assert_memory_bounded(server, baseline, "SETTINGS flood")
    assert_serving(server)


def test_empty_data_frame_flood(server):
    baseline = warmed_rss(server)

    def frames(conn):
        conn.headers(1, request_headers("/pier.testing.v1.Echo/ClientStream"))
        empty = frame(DATA, 0, 1, b"") * 1000
        return (empty for _ in range(500))

    flood(server, frames)
    assert_memory_bounded(server, baseline, "empty DATA flood")
    assert_serving(server)


def test_one_byte_data_flood_within_window(server):
    baseline = warmed_rss(server)

    def frames(conn):
        conn.headers(1, request_headers("/pier.testing.v1.Echo/ClientStream"))
        # A message announced as 1 MB, fed one byte per frame: within the stream's window.
        yield frame(DATA, 0, 1, grpc_message(b"", declared_length=1_000_000))
        one = frame(DATA, 0, 1, b"\x00") * 1000
        for _ in range(900):
            yield one

    flood(server, frames)
    assert_memory_bounded(server, baseline, "1-byte DATA flood")
    assert_serving(server)


def test_window_update_flood(server):
    baseline = warmed_rss(server)
    update = frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) * 1000
    flood(server, lambda conn: (update for _ in range(200)))
    assert_memory_bounded(server, baseline, "WINDOW_UPDATE flood")
    assert_serving(server)


def test_rapid_reset(server):
    # Open a stream and reset it at once, over and over (CVE-2023-44487).
    baseline = warmed_rss(server)

    def frames(conn):
        body = grpc_message(echo_pb2.EchoRequest(delay_ms=1000).SerializeToString())
        stream_id = 1
        while stream_id < 2**31 - 2:
            batch = []
            for _ in range(100):
                block = conn.encoder.encode(request_headers("/pier.testing.v1.Echo/Slow"))
                batch.append(frame(HEADERS, END_HEADERS, stream_id, block))
                batch.append(frame(DATA, END_STREAM, stream_id, body))
                batch.append(frame(RST_STREAM, 0, stream_id, struct.pack(">I", 8)))
                stream_id += 2
            yield b"".join(batch)

    flood(server, frames, seconds=4)
    assert_memory_bounded(server, baseline, "rapid reset")
    assert_serving(server)


def test_streams_beyond_max_concurrent(test_server_factory):
    server = test_server_factory("--max-concurrent-streams", "16")
    baseline = warmed_rss(server)
    conn = RawConnection(server.address)
    try:
        conn.handshake()
        body = grpc_message(echo_pb2.EchoRequest(delay_ms=3000).SerializeToString())
        # Ignore the advertised limit: 400 calls that each hold their stream for 3 s.
        batch = []
        for i in range(400):
            stream_id = 1 + 2 * i
            block = conn.encoder.encode(request_headers("/pier.testing.v1.Echo/Slow"))
            batch.append(frame(HEADERS, END_HEADERS, stream_id, block) + frame(DATA, END_STREAM, stream_id, body))
        conn.try_send(b"".join(batch))
        conn.drain(timeout=2.0)
        refused = [f for f in conn.frames if f[0] == RST_STREAM or f[0] == GOAWAY]
        assert refused, "streams beyond SETTINGS_MAX_CONCURRENT_STREAMS were neither reset nor refused"
        for kind, _, _, payload in refused:
            code = int.from_bytes(payload[:4] if kind == RST_STREAM else payload[4:8], "big")
            assert code in (REFUSED_STREAM, PROTOCOL_ERROR, ENHANCE_YOUR_CALM), f"frame {kind} code {code}"
    finally:
        conn.close()
    assert_memory_bounded(server, baseline, "stream flood")
    assert_serving(server)


def test_many_streams_across_connections_stay_bounded(test_server_factory):
    server = test_server_factory("--max-concurrent-streams", "100")
    baseline = warmed_rss(server)
    conns = []
    try:
        for _ in range(10):
            conn = RawConnection(server.address)
            conn.handshake()
            batch = []
            for i in range(100):
                block = conn.encoder.encode(request_headers("/pier.testing.v1.Echo/ClientStream"))
                batch.append(frame(HEADERS, END_HEADERS, 1 + 2 * i, block))
            conn.try_send(b"".join(batch))
            conns.append(conn)
        time.sleep(1)
        assert_memory_bounded(server, baseline, "1,000 open streams")
        assert_serving(server)
    finally:
        for conn in conns:
            conn.close()
    assert_serving(server)


def test_continuation_flood(server):
    # Headers that never end (CVE-2024-27316 style): the server must stop buffering them.
    baseline = warmed_rss(server)

    def frames(conn):
        block = conn.encoder.encode(request_headers(UNARY))
        yield frame(HEADERS, 0, 1, block)
        # Never-indexed literals, so every CONTINUATION carries 4 KB of new header bytes.
        filler = conn.encoder.encode([hpack.NeverIndexedHeaderTuple("x-filler", "f" * 4000)], huffman=False)
        chunk = frame(CONTINUATION, 0, 1, filler) * 64
        for _ in range(2000):
            yield chunk

    flood(server, frames)
    assert_memory_bounded(server, baseline, "CONTINUATION flood")
    assert_serving(server)


def test_oversized_header_list_is_refused(server):
    conn = RawConnection(server.address)
    try:
        conn.handshake()
        conn.headers(1, request_headers(UNARY, extra=[("x-big", "b" * 60_000)]), end_stream=True)
        result = conn.response(1)
        answered_ok = grpc_status(result) == 0
        assert not answered_ok, "a 60 KB header list was accepted (limit is 16 KB)"
    finally:
        conn.close()
    assert_serving(server)


# --- slow readers ------------------------------------------------------------------------------------

def test_slow_reader_with_small_window_keeps_server_memory_bounded(server):
    baseline = warmed_rss(server)
    conn = RawConnection(server.address)
    try:
        # A 1 KiB stream window and a client that then reads nothing at all.
        conn.handshake(initial_window_size=1024)
        request = echo_pb2.EchoRequest(payload=b"F" * 16384, count=100_000)  # ~1.6 GB if buffered
        conn.headers(1, request_headers("/pier.testing.v1.Echo/Firehose"))
        conn.data(1, grpc_message(request.SerializeToString()), end_stream=True)
        time.sleep(3)
        assert_memory_bounded(server, baseline, "Firehose to a stalled reader")
        assert_serving(server)
    finally:
        conn.close()
    # Closing the connection ends the call; the handler sees it and stops.
    with grpc.insecure_channel(server.address) as ch:
        stub = echo_pb2_grpc.EchoStub(ch)
        deadline = time.monotonic() + 10
        while stub.Stats(echo_pb2.Empty(), timeout=10).cancelled_calls == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stub.Stats(echo_pb2.Empty(), timeout=10).cancelled_calls >= 1


def test_slow_reader_that_stops_reading_the_socket(server):
    # Large windows, but the client never reads: TCP backpressure must reach the handler.
    baseline = warmed_rss(server)
    conn = RawConnection(server.address)
    try:
        conn.start(initial_window_size=2**31 - 1)
        conn.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1 - 65535)))
        request = echo_pb2.EchoRequest(payload=b"G" * 16384, count=100_000)
        conn.headers(1, request_headers("/pier.testing.v1.Echo/Firehose"))
        conn.data(1, grpc_message(request.SerializeToString()), end_stream=True)
        time.sleep(3)
        assert_memory_bounded(server, baseline, "Firehose to a client not reading its socket")
        assert_serving(server)
    finally:
        conn.close()
    assert_serving(server)


def test_grpc_client_pausing_mid_stream(server):
    baseline = warmed_rss(server)
    with grpc.insecure_channel(server.address) as ch:
        stub = echo_pb2_grpc.EchoStub(ch)
        call = stub.Firehose(echo_pb2.EchoRequest(payload=b"H" * 16384, count=100_000), timeout=60)
        for _ in range(10):
            next(call)
        time.sleep(3)
        assert_memory_bounded(server, baseline, "Firehose to a paused grpcio client")
        # Reading on still works: nothing was dropped.
        for _ in range(1000):
            assert len(next(call).payload) == 16384
        call.cancel()
    assert_serving(server)


# --- connection cap ---------------------------------------------------------------------------------------

def test_connection_cap(test_server_factory):
    server = test_server_factory("--max-connections", "4")
    held = []
    try:
        for _ in range(4):
            conn = RawConnection(server.address)
            conn.handshake()
            conn.headers(1, request_headers(CHECK))
            conn.data(1, grpc_message(b""), end_stream=True)
            assert grpc_status(conn.response(1)) == 0
            held.append(conn)
        extra = RawConnection(server.address)
        try:
            extra.try_send(PREFACE + settings())
            assert extra.wait_closed(timeout=5), "a fifth connection was served with a cap of four"
        finally:
            extra.close()
        # Existing connections keep working.
        held[0].headers(3, request_headers(CHECK))
        held[0].data(3, grpc_message(b""), end_stream=True)
        assert grpc_status(held[0].response(3)) == 0
    finally:
        for conn in held:
            conn.close()
    # Once they are gone, new connections are served again.
    deadline = time.monotonic() + 10
    while True:
        try:
            assert_serving(server)
            break
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_idle_connections_do_not_break_server(server):
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    try:
        assert_serving(server)
    finally:
        for sock in socks:
            sock.close()
    assert_serving(server)
