"""`pier serve` as an operator starts it: binds, reports its port, is healthy, stops cleanly."""
import os
import signal

import grpc

from pier._proto.grpc.health.v1 import health_pb2, health_pb2_grpc


def test_serve_reports_port_and_is_healthy(pier_server):
    with grpc.insecure_channel(pier_server.address) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_serve_does_not_serve_test_services(pier_server):
    with grpc.insecure_channel(pier_server.address) as ch:
        with_call = ch.unary_unary("/pier.testing.v1.Echo/Unary")
        try:
            with_call(b"", timeout=10)
            raise AssertionError("pier serves the test-only Echo service")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_serve_creates_data_dir_and_exits_zero_on_sigterm(pier_factory, tmp_path):
    data_dir = tmp_path / "fresh" / "data"
    server = pier_factory(data_dir=data_dir)
    assert os.path.isdir(data_dir)
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0, server.stderr()


def test_serve_refuses_a_port_in_use(pier_server, pier_factory, tmp_path):
    from pier_servers import build
    import subprocess
    result = subprocess.run([build("pier"), "serve", "--listen", pier_server.address,
                             "--data-dir", str(tmp_path / "other")], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip(), "no message saying why it could not start"
