"""TLS on the gRPC port with etcd's flags: server TLS, mutual TLS, the clear-text refusal, and
etcdctl over TLS. Certificates are made at test time with openssl."""
import os
import shutil
import subprocess

import grpc
import pytest

from pier._proto.grpc.health.v1 import health_pb2, health_pb2_grpc


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate for "alice"."""
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=pier-test-ca", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, subject, extra in [("server", "/CN=localhost", ["-extfile", "san.ext"]), ("client", "/CN=alice", [])]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", subject, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", *extra, cwd=d)
    return d


def read(path):
    return open(path, "rb").read()


def check(address, credentials):
    with grpc.secure_channel(address, credentials) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status


def test_server_tls(pier_factory, certs):
    server = pier_factory("--cert-file", str(certs / "server.pem"), "--key-file", str(certs / "server.key"))
    credentials = grpc.ssl_channel_credentials(root_certificates=read(certs / "ca.pem"))
    assert check(server.address, credentials) == health_pb2.HealthCheckResponse.SERVING
    # A clear-text client gets no answer from a TLS port.
    with grpc.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.RpcError) as failure:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate(pier_factory, certs):
    server = pier_factory("--cert-file", str(certs / "server.pem"), "--key-file", str(certs / "server.key"),
                          "--trusted-ca-file", str(certs / "ca.pem"), "--client-cert-auth")
    with_cert = grpc.ssl_channel_credentials(root_certificates=read(certs / "ca.pem"),
                                             private_key=read(certs / "client.key"),
                                             certificate_chain=read(certs / "client.pem"))
    assert check(server.address, with_cert) == health_pb2.HealthCheckResponse.SERVING
    without_cert = grpc.ssl_channel_credentials(root_certificates=read(certs / "ca.pem"))
    with pytest.raises(grpc.RpcError) as failure:
        check(server.address, without_cert)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.skipif(shutil.which("etcdctl") is None, reason="etcdctl (Debian etcd-client) not installed")
def test_etcdctl_over_mutual_tls(pier_factory, certs):
    server = pier_factory("--cert-file", str(certs / "server.pem"), "--key-file", str(certs / "server.key"),
                          "--trusted-ca-file", str(certs / "ca.pem"), "--client-cert-auth")
    port = server.address.rsplit(":", 1)[1]
    base = ["etcdctl", f"--endpoints=https://127.0.0.1:{port}", "--cacert", str(certs / "ca.pem"),
            "--cert", str(certs / "client.pem"), "--key", str(certs / "client.key")]
    env = dict(os.environ, ETCDCTL_API="3")
    put = subprocess.run(base + ["put", "secure", "yes"], env=env, capture_output=True, text=True, timeout=30)
    assert put.stdout.strip() == "OK", put.stderr
    get = subprocess.run(base + ["get", "secure", "--print-value-only"], env=env, capture_output=True, text=True,
                         timeout=30)
    assert get.stdout.strip() == "yes", get.stderr
