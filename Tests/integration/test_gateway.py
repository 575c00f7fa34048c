"""The gRPC gateway as a grpcio client sees it: call kinds, metadata, deadlines, limits, health."""
import base64
import queue
import signal
import time
from concurrent import futures

import grpc
import pytest

from pier._proto.grpc.health.v1 import health_pb2, health_pb2_grpc
from pier._proto.pier.testing.v1 import echo_pb2, echo_pb2_grpc

MIB = 1024 * 1024
# Let the client send and accept more than the server's 4 MiB, so the server's limit is what is tested.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 16 * MIB),
    ("grpc.max_receive_message_length", 16 * MIB),
]


@pytest.fixture
def channel(test_server):
    with grpc.insecure_channel(test_server.address, options=CHANNEL_OPTIONS) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


@pytest.fixture
def echo(channel):
    return echo_pb2_grpc.EchoStub(channel)


def stats(stub):
    return stub.Stats(echo_pb2.Empty(), timeout=10)


def wait_until(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def metadata_lines(response):
    return dict(line.split("=", 1) for line in response.metadata)


# --- the four call kinds ------------------------------------------------------------------------

def test_unary_echoes_payload(echo):
    reply = echo.Unary(echo_pb2.EchoRequest(payload=b"hello pier"), timeout=10)
    assert reply.payload == b"hello pier"
    assert reply.index == 0


def test_unary_empty_request_gets_empty_reply(echo):
    reply = echo.Unary(echo_pb2.EchoRequest(), timeout=10)
    assert reply.payload == b""


def test_unary_failure_carries_code_and_message(echo):
    with pytest.raises(grpc.RpcError) as info:
        echo.Unary(echo_pb2.EchoRequest(fail_code=grpc.StatusCode.NOT_FOUND.value[0],
                                        error_message="no such key: 100% ünïcode"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # Non-ASCII and '%' survive the percent-encoding of grpc-message.
    assert info.value.details() == "no such key: 100% ünïcode"


def test_server_stream_sends_count_replies(echo):
    replies = list(echo.ServerStream(echo_pb2.EchoRequest(payload=b"x", count=5, delay_ms=10), timeout=10))
    assert [r.index for r in replies] == [0, 1, 2, 3, 4]
    assert all(r.payload == b"x" for r in replies)


def test_server_stream_of_zero_replies_is_ok(echo):
    call = echo.ServerStream(echo_pb2.EchoRequest(count=0), timeout=10)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


def test_server_stream_error_after_replies(echo):
    call = echo.ServerStream(echo_pb2.EchoRequest(payload=b"y", count=3,
                                                  fail_code=grpc.StatusCode.ABORTED.value[0],
                                                  error_message="stopped on purpose"), timeout=10)
    received = []
    with pytest.raises(grpc.RpcError) as info:
        for reply in call:
            received.append(reply.index)
    assert received == [0, 1, 2]
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert info.value.details() == "stopped on purpose"


def test_client_stream_concatenates(echo):
    requests = (echo_pb2.EchoRequest(payload=bytes([i]) * 3) for i in range(10))
    reply = echo.ClientStream(requests, timeout=10)
    assert reply.index == 10
    assert reply.payload == b"".join(bytes([i]) * 3 for i in range(10))


def test_client_stream_of_no_messages(echo):
    reply = echo.ClientStream(iter(()), timeout=10)
    assert reply.index == 0
    assert reply.payload == b""


def test_bidi_replies_as_each_message_arrives(echo):
    # The next request is sent only after the previous reply came back: this proves the
    # server answers each message as it arrives rather than after the client half-closes.
    outbox = queue.Queue()

    def requests():
        while True:
            item = outbox.get()
            if item is None:
                return
            yield item

    call = echo.Bidi(requests(), timeout=10)
    for i in range(20):
        outbox.put(echo_pb2.EchoRequest(payload=f"m{i}".encode()))
        reply = next(call)
        assert reply.payload == f"m{i}".encode()
        assert reply.index == i
    outbox.put(None)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


# --- metadata -------------------------------------------------------------------------------

def test_metadata_text_and_binary_are_echoed(echo):
    binary = bytes(range(256))
    reply, call = echo.Unary.with_call(
        echo_pb2.EchoRequest(payload=b"m"), timeout=10,
        metadata=[("x-pier-text", "hello world"), ("x-pier-trace-bin", binary), ("x-pier-empty-bin", b"")])
    lines = metadata_lines(reply)
    assert lines["x-pier-text"] == "hello world"
    assert base64.b64decode(lines["x-pier-trace-bin"]) == binary
    assert base64.b64decode(lines.get("x-pier-empty-bin", "")) == b""
    # gRPC's own headers are the gateway's business, not metadata.
    for reserved in ("grpc-timeout", "content-type", "te", ":path"):
        assert reserved not in lines
    assert call.code() == grpc.StatusCode.OK


def test_repeated_metadata_keys_all_arrive(echo):
    reply = echo.Unary(echo_pb2.EchoRequest(), timeout=10,
                       metadata=[("x-multi", "a"), ("x-multi", "b")])
    values = [line.split("=", 1)[1] for line in reply.metadata if line.startswith("x-multi=")]
    assert sorted(values) == ["a", "b"]


def test_client_stream_sees_metadata(echo):
    reply = echo.ClientStream(iter([echo_pb2.EchoRequest()]), timeout=10, metadata=[("x-who", "client")])
    assert metadata_lines(reply)["x-who"] == "client"


# --- deadlines and cancellation ---------------------------------------------------------------

def test_deadline_exceeded_and_handler_cancelled(echo):
    before = stats(echo).cancelled_calls
    with pytest.raises(grpc.RpcError) as info:
        echo.Slow(echo_pb2.EchoRequest(delay_ms=20_000), timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The handler itself saw the cancellation (it counts it) instead of sleeping on.
    assert wait_until(lambda: stats(echo).cancelled_calls > before), "Slow handler never observed the deadline"


def test_server_enforces_deadline_it_was_sent(test_server):
    # A raw grpc-timeout header, with a client that does not itself give up: the server must
    # end the call with DEADLINE_EXCEEDED on its own.
    with grpc.insecure_channel(test_server.address) as ch:
        stub = echo_pb2_grpc.EchoStub(ch)
        before = stats(stub).cancelled_calls
        call = stub.Slow.future(echo_pb2.EchoRequest(delay_ms=20_000), timeout=0.5)
        with pytest.raises(grpc.RpcError) as info:
            call.result(timeout=15)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert wait_until(lambda: stats(stub).cancelled_calls > before)


def test_deadline_on_server_stream(echo):
    call = echo.ServerStream(echo_pb2.EchoRequest(count=1000, delay_ms=100), timeout=0.5)
    with pytest.raises(grpc.RpcError) as info:
        for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_client_cancel_cancels_handler(echo):
    before = stats(echo).cancelled_calls
    call = echo.Slow.future(echo_pb2.EchoRequest(delay_ms=20_000), timeout=60)
    time.sleep(0.3)
    assert call.cancel()
    assert wait_until(lambda: stats(echo).cancelled_calls > before), "RST_STREAM did not cancel the handler"


def test_cancel_streaming_call_cancels_handler(echo):
    before = stats(echo).cancelled_calls
    call = echo.ServerStream(echo_pb2.EchoRequest(count=100_000, delay_ms=50), timeout=60)
    assert next(call).index == 0
    call.cancel()
    assert wait_until(lambda: stats(echo).cancelled_calls > before)


def test_completed_calls_are_counted(echo):
    before = stats(echo).completed_calls
    echo.Slow(echo_pb2.EchoRequest(delay_ms=50), timeout=10)
    assert stats(echo).completed_calls > before


# --- message size limits -------------------------------------------------------------------------

def request_of_size(size):
    """An EchoRequest whose serialized size is exactly `size` bytes."""
    payload_len = size - 6  # tag (1) + varint length (<= 5 for these sizes)
    while True:
        request = echo_pb2.EchoRequest(payload=b"p" * payload_len)
        if request.ByteSize() == size:
            return request
        payload_len += size - request.ByteSize()


def test_message_just_under_limit_is_accepted(echo):
    request = request_of_size(4 * MIB - 64)
    reply = echo.Unary(request, timeout=30)
    assert len(reply.payload) == len(request.payload)


def test_message_of_exactly_limit_is_accepted(echo):
    request = request_of_size(4 * MIB)
    reply = echo.Unary(request, timeout=30)
    assert len(reply.payload) == len(request.payload)


def test_message_over_limit_is_resource_exhausted(echo):
    with pytest.raises(grpc.RpcError) as info:
        echo.Unary(request_of_size(4 * MIB + 1), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The connection is still good for the next call.
    assert echo.Unary(echo_pb2.EchoRequest(payload=b"after"), timeout=10).payload == b"after"


def test_oversized_message_in_client_stream(echo):
    requests = iter([echo_pb2.EchoRequest(payload=b"ok"), request_of_size(4 * MIB + 1)])
    with pytest.raises(grpc.RpcError) as info:
        echo.ClientStream(requests, timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_configured_smaller_limit(test_server_factory):
    server = test_server_factory("--max-message-bytes", "1000")
    with grpc.insecure_channel(server.address) as ch:
        stub = echo_pb2_grpc.EchoStub(ch)
        assert stub.Unary(request_of_size(1000), timeout=10).payload
        with pytest.raises(grpc.RpcError) as info:
            stub.Unary(request_of_size(1001), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_gzip_compressed_requests(echo):
    payload = b"compressible " * 10_000
    reply = echo.Unary(echo_pb2.EchoRequest(payload=payload), timeout=30, compression=grpc.Compression.Gzip)
    assert reply.payload == payload
    replies = echo.ClientStream(iter([echo_pb2.EchoRequest(payload=b"ab")] * 3), timeout=30,
                                compression=grpc.Compression.Gzip)
    assert replies.payload == b"ababab"


# --- concurrency -------------------------------------------------------------------------------

def test_thousand_concurrent_streams_on_one_connection(test_server):
    # One channel is one HTTP/2 connection; every call is in flight at once (each waits 300 ms).
    with grpc.insecure_channel(test_server.address, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        stub = echo_pb2_grpc.EchoStub(ch)
        calls = [stub.Slow.future(echo_pb2.EchoRequest(payload=str(i).encode(), delay_ms=300), timeout=60)
                 for i in range(1000)]
        replies = [call.result() for call in calls]
    assert [r.payload for r in replies] == [str(i).encode() for i in range(1000)]


def test_concurrent_mixed_calls_from_threads(test_server):
    with grpc.insecure_channel(test_server.address) as ch:
        stub = echo_pb2_grpc.EchoStub(ch)

        def work(i):
            if i % 3 == 0:
                return stub.Unary(echo_pb2.EchoRequest(payload=b"u%d" % i), timeout=30).payload
            if i % 3 == 1:
                return b"".join(r.payload for r in stub.ServerStream(
                    echo_pb2.EchoRequest(payload=b"s", count=4), timeout=30))
            return stub.ClientStream(iter([echo_pb2.EchoRequest(payload=b"c")] * 4), timeout=30).payload

        with futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(work, range(300)))
    for i, result in enumerate(results):
        assert result == ([b"u%d" % i, b"ssss", b"cccc"][i % 3])


# --- routing -----------------------------------------------------------------------------------

def test_unknown_service_is_unimplemented(channel):
    call = channel.unary_unary("/no.such.v1.Service/Method")
    with pytest.raises(grpc.RpcError) as info:
        call(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unknown_method_is_unimplemented(channel):
    call = channel.unary_unary("/pier.testing.v1.Echo/NoSuchMethod")
    with pytest.raises(grpc.RpcError) as info:
        call(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unknown_streaming_method_is_unimplemented(channel):
    call = channel.stream_stream("/pier.testing.v1.Echo/Nope")
    with pytest.raises(grpc.RpcError) as info:
        list(call(iter([b"", b""]), timeout=10))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_malformed_protobuf_is_invalid_argument(channel):
    # Raw bytes (no serializer): a field header announcing more bytes than follow.
    call = channel.unary_unary("/pier.testing.v1.Echo/Unary")
    with pytest.raises(grpc.RpcError) as info:
        call(b"\x0a\xff\xff\xff\x0f\x01", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "EchoRequest" in info.value.details()


def test_malformed_protobuf_to_health(channel):
    call = channel.unary_unary("/grpc.health.v1.Health/Check")
    with pytest.raises(grpc.RpcError) as info:
        call(b"\xff", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_server_stream_with_two_requests_fails(channel):
    # A server-streaming method given two requests on the wire is a protocol violation.
    call = channel.stream_stream("/pier.testing.v1.Echo/ServerStream")
    request = echo_pb2.EchoRequest(count=1).SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        list(call(iter([request, request]), timeout=10))
    assert info.value.code() != grpc.StatusCode.OK


# --- health ---------------------------------------------------------------------------------------

def test_health_check_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reply = health.Check(health_pb2.HealthCheckRequest(service="pier.testing.v1.Echo"), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_check_unknown_service_is_not_found(channel):
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_watch_streams_current_status(channel):
    health = health_pb2_grpc.HealthStub(channel)
    call = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert next(call).status == health_pb2.HealthCheckResponse.SERVING
    call.cancel()


def test_health_watch_unknown_service(channel):
    health = health_pb2_grpc.HealthStub(channel)
    call = health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=30)
    assert next(call).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    call.cancel()


def test_health_watch_sees_not_serving_on_shutdown(test_server_factory):
    server = test_server_factory()
    with grpc.insecure_channel(server.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        call = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(call).status == health_pb2.HealthCheckResponse.SERVING
        server.signal(signal.SIGTERM)
        # Either the NOT_SERVING update arrives, or the stream ends as the server goes away.
        try:
            update = next(call)
            assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
        except (grpc.RpcError, StopIteration):
            pass
    assert server.wait(30) == 0


# --- graceful shutdown ---------------------------------------------------------------------------

def start_slow_calls_then_sigterm(server, stub):
    stub.Unary(echo_pb2.EchoRequest(), timeout=10)  # connection up before the signal
    calls = [stub.Slow.future(echo_pb2.EchoRequest(payload=b"%d" % i, delay_ms=1500), timeout=30)
             for i in range(5)]
    stream = stub.ServerStream(echo_pb2.EchoRequest(payload=b"s", count=6, delay_ms=250), timeout=30)
    time.sleep(0.4)
    server.signal(signal.SIGTERM)
    return calls, stream


def test_sigterm_refuses_new_connections(test_server_factory):
    server = test_server_factory()
    with grpc.insecure_channel(server.address) as ch:
        start_slow_calls_then_sigterm(server, echo_pb2_grpc.EchoStub(ch))
        time.sleep(0.4)
        # While the calls in flight drain, a new connection is refused: the listener is closed.
        with grpc.insecure_channel(server.address) as fresh:
            with pytest.raises(grpc.RpcError) as info:
                echo_pb2_grpc.EchoStub(fresh).Unary(echo_pb2.EchoRequest(), timeout=3)
            assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert server.wait(30) == 0, server.stderr()


def test_sigterm_lets_inflight_calls_finish_then_exits_zero(test_server_factory):
    server = test_server_factory()
    with grpc.insecure_channel(server.address) as ch:
        calls, stream = start_slow_calls_then_sigterm(server, echo_pb2_grpc.EchoStub(ch))
        outcomes = []
        for call in calls:
            try:
                outcomes.append(call.result(timeout=30).payload)
            except grpc.RpcError as error:
                outcomes.append(f"{error.code().name}: {error.details()}")
        try:
            streamed = [reply.index for reply in stream]
        except grpc.RpcError as error:
            streamed = f"{error.code().name}: {error.details()}"
    assert outcomes == [b"%d" % i for i in range(5)], "unary calls in flight at SIGTERM did not complete"
    assert streamed == [0, 1, 2, 3, 4, 5], "server stream in flight at SIGTERM did not complete"
    code = server.wait(30)
    assert code == 0, f"exit code {code}; stderr:\n{server.stderr()}"


def test_sigint_exits_cleanly(test_server_factory):
    server = test_server_factory()
    server.signal(signal.SIGINT)
    assert server.wait(30) == 0


def test_server_alive_after_this_module(test_server):
    with grpc.insecure_channel(test_server.address) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
