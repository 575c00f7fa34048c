# The etcd v3 key-value API: ranges, puts, deletes, transactions and compaction.
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, List, Optional, Sequence, Union

from pier._proto.etcdserverpb import rpc_pb2
from pier._proto.mvccpb import kv_pb2

if TYPE_CHECKING:
    from pier.client import Client

Key = Union[str, bytes]


def to_bytes(value: Key) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def prefix_range_end(prefix: bytes) -> bytes:
    """The range_end that makes [prefix, end) cover every key starting with `prefix`, as etcd's
    clientv3.GetPrefixRangeEnd computes it; b"\\0" (all keys) for an empty or all-0xff prefix."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _lease_id(lease) -> int:
    # Accept a Lease object or a bare id so either reads naturally at the call site.
    if lease is None:
        return 0
    return int(getattr(lease, "id", lease))


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_pb(cls, kv: kv_pb2.KeyValue) -> "KeyValue":
        return cls(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


@dataclass
class RangeResult:
    """What a range returns: the key-values, how many matched in total, whether `limit` cut the
    list short, and the store revision the read saw."""
    kvs: List[KeyValue]
    count: int
    more: bool
    revision: int

    def __iter__(self) -> Iterator[KeyValue]:
        return iter(self.kvs)

    def __len__(self) -> int:
        return len(self.kvs)

    @classmethod
    def from_pb(cls, r: rpc_pb2.RangeResponse) -> "RangeResult":
        return cls([KeyValue.from_pb(kv) for kv in r.kvs], r.count, r.more, r.header.revision)


@dataclass
class PutResult:
    revision: int
    prev_kv: Optional[KeyValue] = None

    @classmethod
    def from_pb(cls, r: rpc_pb2.PutResponse) -> "PutResult":
        return cls(r.header.revision, KeyValue.from_pb(r.prev_kv) if r.HasField("prev_kv") else None)


@dataclass
class DeleteResult:
    deleted: int
    revision: int
    prev_kvs: List[KeyValue] = field(default_factory=list)

    @classmethod
    def from_pb(cls, r: rpc_pb2.DeleteRangeResponse) -> "DeleteResult":
        return cls(r.deleted, r.header.revision, [KeyValue.from_pb(kv) for kv in r.prev_kvs])


@dataclass
class TxnResult:
    """`responses` holds one RangeResult, PutResult, DeleteResult or TxnResult per op of the
    branch that ran."""
    succeeded: bool
    revision: int
    responses: list

    @classmethod
    def from_pb(cls, r: rpc_pb2.TxnResponse) -> "TxnResult":
        out = []
        for op in r.responses:
            kind = op.WhichOneof("response")
            if kind == "response_range":
                out.append(RangeResult.from_pb(op.response_range))
            elif kind == "response_put":
                out.append(PutResult.from_pb(op.response_put))
            elif kind == "response_delete_range":
                out.append(DeleteResult.from_pb(op.response_delete_range))
            elif kind == "response_txn":
                out.append(TxnResult.from_pb(op.response_txn))
        return cls(r.succeeded, r.header.revision, out)


# --- range options ------------------------------------------------------------------------------

_SORT_ORDER = {None: rpc_pb2.RangeRequest.NONE, "none": rpc_pb2.RangeRequest.NONE,
               "ascend": rpc_pb2.RangeRequest.ASCEND, "descend": rpc_pb2.RangeRequest.DESCEND}
_SORT_TARGET = {"key": rpc_pb2.RangeRequest.KEY, "version": rpc_pb2.RangeRequest.VERSION,
                "create": rpc_pb2.RangeRequest.CREATE, "mod": rpc_pb2.RangeRequest.MOD,
                "value": rpc_pb2.RangeRequest.VALUE}


def range_request(key: Key, range_end: Optional[Key] = None, *, revision: int = 0, limit: int = 0,
                  sort_order: Optional[str] = None, sort_target: str = "key", serializable: bool = False,
                  keys_only: bool = False, count_only: bool = False, min_mod_revision: int = 0,
                  max_mod_revision: int = 0, min_create_revision: int = 0,
                  max_create_revision: int = 0) -> rpc_pb2.RangeRequest:
    try:
        order, target = _SORT_ORDER[sort_order], _SORT_TARGET[sort_target]
    except KeyError as missing:
        raise ValueError(f"unknown sort option {missing}; orders: ascend, descend; "
                         f"targets: {', '.join(_SORT_TARGET)}") from None
    return rpc_pb2.RangeRequest(
        key=to_bytes(key), range_end=to_bytes(range_end) if range_end is not None else b"",
        revision=revision, limit=limit, sort_order=order, sort_target=target,
        serializable=serializable, keys_only=keys_only, count_only=count_only,
        min_mod_revision=min_mod_revision, max_mod_revision=max_mod_revision,
        min_create_revision=min_create_revision, max_create_revision=max_create_revision)


# --- transaction compares -------------------------------------------------------------------------

class _Target:
    """One side of a compare: `Version(b"k") == 0` builds the etcd Compare message."""
    _target = None
    _field = None

    def __init__(self, key: Key, range_end: Optional[Key] = None, *, prefix: bool = False):
        self.key = to_bytes(key)
        self.range_end = prefix_range_end(self.key) if prefix else (to_bytes(range_end) if range_end else b"")

    def _compare(self, result, other) -> rpc_pb2.Compare:
        if isinstance(other, bool):
            raise TypeError("compare against an int or bytes, not a bool")
        value = _lease_id(other) if self._field == "lease" else (to_bytes(other) if self._field == "value" else int(other))
        return rpc_pb2.Compare(result=result, target=self._target, key=self.key, range_end=self.range_end,
                               **{self._field: value})

    def __eq__(self, other):  # type: ignore[override]
        return self._compare(rpc_pb2.Compare.EQUAL, other)

    def __ne__(self, other):  # type: ignore[override]
        return self._compare(rpc_pb2.Compare.NOT_EQUAL, other)

    def __lt__(self, other):
        return self._compare(rpc_pb2.Compare.LESS, other)

    def __gt__(self, other):
        return self._compare(rpc_pb2.Compare.GREATER, other)

    __hash__ = None  # type: ignore[assignment]


class Value(_Target):
    _target, _field = rpc_pb2.Compare.VALUE, "value"


class Version(_Target):
    _target, _field = rpc_pb2.Compare.VERSION, "version"


class CreateRevision(_Target):
    _target, _field = rpc_pb2.Compare.CREATE, "create_revision"


class ModRevision(_Target):
    _target, _field = rpc_pb2.Compare.MOD, "mod_revision"


class LeaseId(_Target):
    _target, _field = rpc_pb2.Compare.LEASE, "lease"


# --- transaction operations -----------------------------------------------------------------------

class ops:
    """Operations for a transaction's branches: `ops.put(k, v)`, `ops.get(k)`, `ops.delete(k)`..."""

    @staticmethod
    def get(key: Key, range_end: Optional[Key] = None, **options) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_range=range_request(key, range_end, **options))

    @staticmethod
    def get_prefix(prefix: Key, **options) -> rpc_pb2.RequestOp:
        return ops.get(prefix, prefix_range_end(to_bytes(prefix)), **options)

    @staticmethod
    def put(key: Key, value: Key, *, lease=None, prev_kv: bool = False, ignore_value: bool = False,
            ignore_lease: bool = False) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
            key=to_bytes(key), value=to_bytes(value), lease=_lease_id(lease), prev_kv=prev_kv,
            ignore_value=ignore_value, ignore_lease=ignore_lease))

    @staticmethod
    def delete(key: Key, range_end: Optional[Key] = None, *, prev_kv: bool = False) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(
            key=to_bytes(key), range_end=to_bytes(range_end) if range_end is not None else b"", prev_kv=prev_kv))

    @staticmethod
    def delete_prefix(prefix: Key, *, prev_kv: bool = False) -> rpc_pb2.RequestOp:
        return ops.delete(prefix, prefix_range_end(to_bytes(prefix)), prev_kv=prev_kv)

    @staticmethod
    def txn(compare: Sequence = (), success: Sequence = (), failure: Sequence = ()) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(
            compare=list(compare), success=list(success), failure=list(failure)))


class Txn:
    """Builder: `kv.txn().if_(Version(k) == 0).then(ops.put(k, v)).else_(ops.get(k)).commit()`.
    Every compare must hold for the `then` branch to run; otherwise `else_` runs."""

    def __init__(self, kv: "KV"):
        self._kv = kv
        self.compare: list = []
        self.success: list = []
        self.failure: list = []

    def if_(self, *compares: rpc_pb2.Compare) -> "Txn":
        self.compare.extend(compares)
        return self

    def then(self, *operations: rpc_pb2.RequestOp) -> "Txn":
        self.success.extend(operations)
        return self

    def else_(self, *operations: rpc_pb2.RequestOp) -> "Txn":
        self.failure.extend(operations)
        return self

    def commit(self, timeout: Optional[float] = None) -> TxnResult:
        request = rpc_pb2.TxnRequest(compare=self.compare, success=self.success, failure=self.failure)
        return TxnResult.from_pb(self._kv._client.call(self._kv._client.kv_stub.Txn, request, timeout))


class KV:
    """`client.kv`: keys and values are bytes (str is encoded as UTF-8)."""

    def __init__(self, client: "Client"):
        self._client = client

    def get(self, key: Key, *, revision: int = 0, serializable: bool = False,
            timeout: Optional[float] = None) -> Optional[KeyValue]:
        """The key's KeyValue (at `revision` if given), or None when it does not exist."""
        result = self.get_range(key, revision=revision, serializable=serializable, timeout=timeout)
        return result.kvs[0] if result.kvs else None

    def get_prefix(self, prefix: Key, *, timeout: Optional[float] = None, **options) -> RangeResult:
        """Every key starting with `prefix`; options as for get_range."""
        return self.get_range(prefix, prefix_range_end(to_bytes(prefix)), timeout=timeout, **options)

    def get_range(self, key: Key, range_end: Optional[Key] = None, *, timeout: Optional[float] = None,
                  **options) -> RangeResult:
        """Keys in [key, range_end) (only `key` without range_end; range_end b"\\0" means every key
        >= key). Options: revision, limit, sort_order ("ascend"/"descend"), sort_target ("key",
        "version", "create", "mod", "value"), serializable, keys_only, count_only and the
        min/max_mod/create_revision filters."""
        request = range_request(key, range_end, **options)
        return RangeResult.from_pb(self._client.call(self._client.kv_stub.Range, request, timeout))

    def put(self, key: Key, value: Key, *, lease=None, prev_kv: bool = False, ignore_value: bool = False,
            ignore_lease: bool = False, timeout: Optional[float] = None) -> PutResult:
        request = ops.put(key, value, lease=lease, prev_kv=prev_kv, ignore_value=ignore_value,
                          ignore_lease=ignore_lease).request_put
        return PutResult.from_pb(self._client.call(self._client.kv_stub.Put, request, timeout))

    def delete(self, key: Key, *, prev_kv: bool = False, timeout: Optional[float] = None) -> DeleteResult:
        return self.delete_range(key, None, prev_kv=prev_kv, timeout=timeout)

    def delete_prefix(self, prefix: Key, *, prev_kv: bool = False, timeout: Optional[float] = None) -> DeleteResult:
        return self.delete_range(prefix, prefix_range_end(to_bytes(prefix)), prev_kv=prev_kv, timeout=timeout)

    def delete_range(self, key: Key, range_end: Optional[Key] = None, *, prev_kv: bool = False,
                     timeout: Optional[float] = None) -> DeleteResult:
        request = ops.delete(key, range_end, prev_kv=prev_kv).request_delete_range
        return DeleteResult.from_pb(self._client.call(self._client.kv_stub.DeleteRange, request, timeout))

    def txn(self, compare: Sequence = (), success: Sequence = (), failure: Sequence = ()) -> Txn:
        """A transaction builder, optionally pre-filled; finish with `.commit()`."""
        return Txn(self).if_(*compare).then(*success).else_(*failure)

    def compact(self, revision: int, *, physical: bool = False, timeout: Optional[float] = None) -> int:
        """Discards history before `revision`; returns the store revision after the call."""
        reply = self._client.call(self._client.kv_stub.Compact,
                                  rpc_pb2.CompactionRequest(revision=revision, physical=physical), timeout)
        return reply.header.revision
