"""Raw HTTP/2 for abuse tests: hand-built frames (to break rules h2 would refuse to break) and a reader."""
import socket
import struct
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 section 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
# Flags.
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
# Error codes (RFC 9113 section 7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = range(12)
# Settings identifiers.
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = range(1, 7)


def frame(kind, flags, stream_id, payload=b""):
    """One frame as bytes, with whatever (possibly invalid) fields the caller gives."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


def settings(**values):
    ids = {"header_table_size": HEADER_TABLE_SIZE, "enable_push": ENABLE_PUSH,
           "max_concurrent_streams": MAX_CONCURRENT_STREAMS, "initial_window_size": INITIAL_WINDOW_SIZE,
           "max_frame_size": MAX_FRAME_SIZE, "max_header_list_size": MAX_HEADER_LIST_SIZE}
    payload = b"".join(struct.pack(">HI", ids[k], v) for k, v in values.items())
    return frame(SETTINGS, 0, 0, payload)


def grpc_message(payload, flag=0, declared_length=None):
    """A gRPC length-prefixed message (the length can lie, for truncation tests)."""
    length = len(payload) if declared_length is None else declared_length
    return bytes([flag]) + struct.pack(">I", length) + payload


def request_headers(path, authority="localhost", content_type="application/grpc", extra=()):
    fields = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", authority)]
    if content_type is not None:
        fields.append(("content-type", content_type))
    fields.append(("te", "trailers"))
    fields.extend(extra)
    return fields


class RawConnection:
    """A client connection that writes raw frames and parses what the server sends back."""

    def __init__(self, address, timeout=10.0):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 65536
        self.buffer = b""
        self.closed = False
        self.frames = []  # every frame received: (type, flags, stream_id, payload)

    def start(self, **client_settings):
        """Preface and SETTINGS, as a well-behaved client opens."""
        self.send(PREFACE + settings(**client_settings))

    def handshake(self, timeout=5.0, **client_settings):
        """Opens the connection and acknowledges the server's SETTINGS."""
        self.start(**client_settings)
        server_settings = self.read_until(lambda f: f[0] == SETTINGS and not f[1] & ACK, timeout)
        assert server_settings is not None, "server sent no SETTINGS"
        self.send(frame(SETTINGS, ACK, 0))
        return server_settings

    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """Sends unless the server has closed or stopped reading; False when it could not."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            return False

    def headers(self, stream_id, fields, end_stream=False):
        block = self.encoder.encode(fields)
        self.send(frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream_id, block))

    def data(self, stream_id, payload, end_stream=False):
        self.send(frame(DATA, END_STREAM if end_stream else 0, stream_id, payload))

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.closed:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, OSError):
            self.closed = True
            return False
        if not chunk:
            self.closed = True
            return False
        self.buffer += chunk
        return True

    def next_frame(self, deadline):
        while True:
            if len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) >= 9 + length:
                    kind, flags = self.buffer[3], self.buffer[4]
                    stream_id = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
                    payload = self.buffer[9:9 + length]
                    self.buffer = self.buffer[9 + length:]
                    received = (kind, flags, stream_id, payload)
                    self.frames.append(received)
                    return received
            if not self._fill(deadline):
                return None

    def read_until(self, predicate, timeout=5.0):
        """Reads frames until one satisfies `predicate` (returned), EOF or timeout (None)."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.next_frame(deadline)
            if received is None:
                return None
            if predicate(received):
                return received

    def drain(self, timeout=1.0):
        """Reads (and records) frames for a while; returns True when the server closed."""
        deadline = time.monotonic() + timeout
        while self.next_frame(deadline) is not None:
            pass
        return self.closed

    def goaway_error(self, timeout=5.0):
        """The error code of the server's GOAWAY, or None when none came."""
        received = self.read_until(lambda f: f[0] == GOAWAY, timeout)
        if received is None:
            return None
        return int.from_bytes(received[3][4:8], "big")

    def wait_closed(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            if self.next_frame(deadline) is None and not self.closed:
                break
        return self.closed

    def response(self, stream_id, timeout=10.0):
        """Headers, DATA bytes and trailers of one stream, read until it ends or is reset."""
        result = {"headers": None, "data": b"", "trailers": None, "reset": None}
        deadline = time.monotonic() + timeout
        while True:
            received = self.next_frame(deadline)
            if received is None:
                return result
            kind, flags, sid, payload = received
            if kind == SETTINGS and not flags & ACK:
                self.send(frame(SETTINGS, ACK, 0))
            if kind == PING and not flags & ACK:
                self.send(frame(PING, ACK, 0, payload))
            if sid != stream_id:
                continue
            if kind == HEADERS:
                block = strip_headers_padding(flags, payload)
                fields = dict(self.decoder.decode(block, raw=False))
                if result["headers"] is None:
                    result["headers"] = fields
                else:
                    result["trailers"] = fields
            elif kind == DATA:
                result["data"] += strip_data_padding(flags, payload)
                # Give the window back so long responses are not stalled by the test itself.
                if payload:
                    self.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload)))
                              + frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", len(payload))))
            elif kind == RST_STREAM:
                result["reset"] = int.from_bytes(payload[:4], "big")
                return result
            if flags & END_STREAM and kind in (HEADERS, DATA):
                return result

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def strip_headers_padding(flags, payload):
    if flags & PADDED:
        pad = payload[0]
        payload = payload[1:len(payload) - pad]
    if flags & PRIORITY_FLAG:
        payload = payload[5:]
    return payload


def strip_data_padding(flags, payload):
    if flags & PADDED:
        pad = payload[0]
        payload = payload[1:len(payload) - pad]
    return payload


def grpc_status(result):
    """The grpc-status of a raw response (trailers, or headers of a trailers-only reply)."""
    for fields in (result["trailers"], result["headers"]):
        if fields and "grpc-status" in fields:
            return int(fields["grpc-status"])
    return None
