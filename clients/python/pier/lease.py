# Leases: grant, revoke, time-to-live, and keep-alive on one stream in a background thread.
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional

import grpc

from pier._proto.etcdserverpb import rpc_pb2
from pier.errors import LeaseNotFoundError, PierError, from_rpc_error
from pier.kv import _lease_id

if TYPE_CHECKING:
    from pier.client import Client

_CLOSED = object()


@dataclass
class LeaseTTL:
    """A lease's state: `ttl` seconds left (-1 when it has expired or never existed), the TTL it
    was granted with, and the keys attached to it when asked for."""
    id: int
    ttl: int
    granted_ttl: int
    keys: List[bytes] = field(default_factory=list)


class Lease:
    """A granted lease. Pass it (or its `id`) as `lease=` to `kv.put`."""

    def __init__(self, api: "LeaseAPI", lease_id: int, ttl: int):
        self._api = api
        self.id = lease_id
        self.ttl = ttl

    def revoke(self) -> None:
        self._api.revoke(self.id)

    def time_to_live(self, keys: bool = False) -> LeaseTTL:
        return self._api.time_to_live(self.id, keys=keys)

    def refresh(self) -> int:
        return self._api.keep_alive_once(self.id)

    def keep_alive(self, interval: Optional[float] = None) -> "KeepAlive":
        return self._api.keep_alive(self.id, interval=interval)

    def __int__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"Lease(id={self.id:#x}, ttl={self.ttl})"


class LeaseAPI:
    """`client.lease`."""

    def __init__(self, client: "Client"):
        self._client = client

    def grant(self, ttl: int, id: int = 0, timeout: Optional[float] = None) -> Lease:
        """A new lease of `ttl` seconds (the server picks the id unless one is given)."""
        reply = self._client.call(self._client.lease_stub.LeaseGrant,
                                  rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=id), timeout)
        if reply.error:
            raise PierError(reply.error)
        return Lease(self, reply.ID, reply.TTL)

    def revoke(self, lease, timeout: Optional[float] = None) -> None:
        """Ends the lease now, deleting every key attached to it."""
        self._client.call(self._client.lease_stub.LeaseRevoke,
                          rpc_pb2.LeaseRevokeRequest(ID=_lease_id(lease)), timeout)

    def time_to_live(self, lease, keys: bool = False, timeout: Optional[float] = None) -> LeaseTTL:
        reply = self._client.call(self._client.lease_stub.LeaseTimeToLive,
                                  rpc_pb2.LeaseTimeToLiveRequest(ID=_lease_id(lease), keys=keys), timeout)
        return LeaseTTL(reply.ID, reply.TTL, reply.grantedTTL, list(reply.keys))

    def leases(self, timeout: Optional[float] = None) -> List[int]:
        reply = self._client.call(self._client.lease_stub.LeaseLeases, rpc_pb2.LeaseLeasesRequest(), timeout)
        return [status.ID for status in reply.leases]

    def keep_alive_once(self, lease, timeout: Optional[float] = None) -> int:
        """Renews the lease once; returns its new TTL. LeaseNotFoundError if it has expired."""
        lease_id = _lease_id(lease)
        call = self._client.lease_stub.LeaseKeepAlive(
            iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)]),
            timeout=self._client.timeout if timeout is None else timeout)
        try:
            for reply in call:
                if reply.TTL <= 0:
                    raise LeaseNotFoundError("etcdserver: requested lease not found", grpc.StatusCode.NOT_FOUND)
                return reply.TTL
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()
        raise LeaseNotFoundError("etcdserver: requested lease not found", grpc.StatusCode.NOT_FOUND)

    def keep_alive(self, lease, interval: Optional[float] = None) -> "KeepAlive":
        """Keeps the lease alive from a background thread until closed (a context manager)."""
        return KeepAlive(self._client, _lease_id(lease), interval,
                         lease.ttl if isinstance(lease, Lease) else None)


class KeepAlive:
    """Renews one lease every `interval` seconds (default a third of its TTL, as etcd's clients
    do) on one LeaseKeepAlive stream. `ttl` is the last TTL the server granted; when the lease is
    gone or the stream fails, the thread stops and `error` says why."""

    def __init__(self, client: "Client", lease_id: int, interval: Optional[float], ttl: Optional[int]):
        self.lease_id = lease_id
        self.ttl: Optional[int] = ttl
        self.error: Optional[PierError] = None
        self._interval = interval
        self._stop = threading.Event()
        self._requests: "queue.Queue" = queue.Queue()
        self._call = client.lease_stub.LeaseKeepAlive(self._request_iter())
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pier-lease-keepalive", daemon=True)
        self._thread.start()
        # The first renewal tells us the TTL to pace the rest by (and fails fast on a dead lease).
        self._first.wait(client.timeout)
        if self.error is not None:
            self.close()
            raise self.error

    def _request_iter(self):
        while True:
            item = self._requests.get()
            if item is _CLOSED:
                return
            yield item

    def _run(self) -> None:
        responses = iter(self._call)
        try:
            while not self._stop.is_set():
                self._requests.put(rpc_pb2.LeaseKeepAliveRequest(ID=self.lease_id))
                reply = next(responses)
                if reply.TTL <= 0:
                    self.error = LeaseNotFoundError("etcdserver: requested lease not found", grpc.StatusCode.NOT_FOUND)
                    return
                self.ttl = reply.TTL
                self._first.set()
                interval = self._interval if self._interval is not None else max(reply.TTL / 3.0, 0.5)
                self._stop.wait(interval)
        except StopIteration:
            if not self._stop.is_set():
                self.error = PierError("lease keep-alive stream ended by the server")
        except grpc.RpcError as error:
            if not self._stop.is_set():
                self.error = from_rpc_error(error)
        finally:
            self._first.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.error is None

    def close(self) -> None:
        """Stops renewing (the lease then expires after its TTL unless revoked)."""
        self._stop.set()
        self._requests.put(_CLOSED)
        self._call.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)

    def __enter__(self) -> "KeepAlive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
