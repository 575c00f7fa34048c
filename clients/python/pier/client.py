# Client: one gRPC channel to a Pier (or etcd) endpoint and the APIs that share it.
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import grpc

from pier._proto.etcdserverpb import rpc_pb2_grpc
from pier._proto.grpc.health.v1 import health_pb2, health_pb2_grpc
from pier._proto.pier.log.v1 import log_pb2_grpc
from pier.errors import from_rpc_error
from pier.kv import KV, Key, to_bytes
from pier.lease import LeaseAPI
from pier.log_admin import LogAdmin
from pier.watch import Watch

# etcd accepts requests up to 1.5 MiB and replies can be larger (a big range); gRPC's default
# 4 MiB receive limit would turn a legitimate large range into a client-side error.
_DEFAULT_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
)


class Client:
    """A connection to one endpoint ("host:port"). `timeout` (seconds) bounds every unary call;
    streams (watch, keep-alive, consumers) are long-lived and bounded by their own close."""

    def __init__(self, endpoint: str = "127.0.0.1:2379", timeout: Optional[float] = 10.0,
                 options: Sequence[Tuple[str, object]] = ()):
        self.endpoint = endpoint
        self.timeout = timeout
        self.channel = grpc.insecure_channel(endpoint, options=list(_DEFAULT_OPTIONS) + list(options))
        self.kv_stub = rpc_pb2_grpc.KVStub(self.channel)
        self.watch_stub = rpc_pb2_grpc.WatchStub(self.channel)
        self.lease_stub = rpc_pb2_grpc.LeaseStub(self.channel)
        self.log_stub = log_pb2_grpc.LogStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.kv = KV(self)
        self.lease = LeaseAPI(self)
        self.admin = LogAdmin(self)

    def call(self, method, request, timeout: Optional[float] = None, **kwargs):
        """Runs a unary call with the client's default timeout, raising PierError on failure."""
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout, **kwargs)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def watch(self, key: Key, *, prefix: bool = False, range_end: Optional[Key] = None,
              start_revision: int = 0, prev_kv: bool = False, progress_notify: bool = False,
              filters: Iterable[str] = ()) -> Watch:
        """Watches a key, a prefix or a range on one Watch stream; iterate for events, close to cancel."""
        return Watch(self, to_bytes(key), prefix=prefix, range_end=range_end, start_revision=start_revision,
                     prev_kv=prev_kv, progress_notify=progress_notify, filters=filters)

    def health(self, service: str = "", timeout: Optional[float] = None) -> bool:
        """True when the server reports `service` ("" for the whole server) as SERVING."""
        reply = self.call(self.health_stub.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
