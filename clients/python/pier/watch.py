# Watch: one etcd Watch stream for one key, prefix or range, read as an iterator of events.
from __future__ import annotations

import collections
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Optional

import grpc

from pier._proto.etcdserverpb import rpc_pb2
from pier._proto.mvccpb import kv_pb2
from pier.errors import CompactedError, DeadlineExceededError, PierError, from_rpc_error
from pier.kv import Key, KeyValue, prefix_range_end, to_bytes

if TYPE_CHECKING:
    from pier.client import Client

_FILTERS = {"noput": rpc_pb2.WatchCreateRequest.NOPUT, "nodelete": rpc_pb2.WatchCreateRequest.NODELETE}
_CLOSED = object()


@dataclass(frozen=True)
class Event:
    """A change: type "put" or "delete", the key-value after it (for a delete: the key and the
    deletion's mod_revision), and the one before it when the watch asked for prev_kv."""
    type: str
    kv: KeyValue
    prev_kv: Optional[KeyValue] = None

    @property
    def key(self) -> bytes:
        return self.kv.key

    @property
    def value(self) -> bytes:
        return self.kv.value

    @classmethod
    def from_pb(cls, event: kv_pb2.Event) -> "Event":
        kind = "put" if event.type == kv_pb2.Event.PUT else "delete"
        prev = KeyValue.from_pb(event.prev_kv) if event.HasField("prev_kv") else None
        return cls(kind, KeyValue.from_pb(event.kv), prev)


class Watch:
    """Created by `client.watch(...)`. The stream is open (and the watcher registered) when the
    constructor returns, so changes made afterwards are seen. Iterating blocks for the next
    event; `get(timeout)` waits a bounded time. `close()` (or leaving the `with` block) cancels."""

    # Responses buffered before the reader stops reading, so a slow consumer pushes back on the
    # server through HTTP/2 flow control instead of growing memory.
    MAX_BUFFERED_RESPONSES = 256

    def __init__(self, client: "Client", key: bytes, *, prefix: bool = False, range_end: Optional[Key] = None,
                 start_revision: int = 0, prev_kv: bool = False, progress_notify: bool = False,
                 filters: Iterable[str] = ()):
        if prefix and range_end is not None:
            raise ValueError("give prefix=True or range_end, not both")
        end = prefix_range_end(key) if prefix else (to_bytes(range_end) if range_end is not None else b"")
        create = rpc_pb2.WatchCreateRequest(key=key, range_end=end, start_revision=start_revision,
                                            prev_kv=prev_kv, progress_notify=progress_notify,
                                            filters=[_FILTERS[f] for f in filters])
        self.watch_id: Optional[int] = None
        # The store revision when the watch was created (events after it are reported).
        self.revision = 0
        self._requests: "queue.Queue" = queue.Queue()
        self._responses: "queue.Queue" = queue.Queue(self.MAX_BUFFERED_RESPONSES)
        self._pending: collections.deque = collections.deque()
        self._closed = threading.Event()
        self._created = threading.Event()
        self._create_error: Optional[PierError] = None
        self._requests.put(rpc_pb2.WatchRequest(create_request=create))
        self._call = client.watch_stub.Watch(self._request_iter())
        self._reader = threading.Thread(target=self._read, name="pier-watch", daemon=True)
        self._reader.start()
        if not self._created.wait(client.timeout):
            self.close()
            raise DeadlineExceededError("watch was not created in time", grpc.StatusCode.DEADLINE_EXCEEDED)
        if self._create_error is not None:
            self.close()
            raise self._create_error

    def _request_iter(self):
        while True:
            item = self._requests.get()
            if item is _CLOSED:
                return
            yield item

    def _put(self, item) -> bool:
        while not self._closed.is_set():
            try:
                self._responses.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for response in self._call:
                if response.created and self.watch_id is None:
                    self.watch_id = response.watch_id
                    self.revision = response.header.revision
                    if response.canceled:
                        self._create_error = PierError(response.cancel_reason or "watch canceled on create")
                    self._created.set()
                    if response.canceled:
                        return
                    continue
                if response.canceled:
                    if response.compact_revision:
                        error: PierError = CompactedError(
                            "etcdserver: mvcc: required revision has been compacted",
                            compact_revision=response.compact_revision)
                    else:
                        error = PierError(response.cancel_reason or "watch canceled by the server")
                    self._put(error)
                    return
                if response.events:
                    if not self._put([Event.from_pb(e) for e in response.events]):
                        return
        except grpc.RpcError as rpc_error:
            if not self._closed.is_set():
                error = from_rpc_error(rpc_error)
                if not self._created.is_set():
                    self._create_error = error
                else:
                    self._put(error)
        finally:
            self._created.set()
            if not self._closed.is_set():
                self._put(_CLOSED)

    def get(self, timeout: Optional[float] = None) -> Event:
        """The next event; raises TimeoutError after `timeout` seconds without one, StopIteration
        once closed, or the PierError that ended the stream (CompactedError for a compacted start)."""
        if self._pending:
            return self._pending.popleft()
        if self._closed.is_set() and self._responses.empty():
            raise StopIteration
        try:
            item = self._responses.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no watch event within {timeout} s") from None
        if item is _CLOSED:
            self._closed.set()
            raise StopIteration
        if isinstance(item, PierError):
            self._closed.set()
            raise item
        self._pending.extend(item)
        return self._pending.popleft()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        return self.get()

    def close(self) -> None:
        """Cancels the watcher and ends the stream; safe to call more than once."""
        if self._closed.is_set() and not self._reader.is_alive():
            return
        self._closed.set()
        if self.watch_id is not None:
            self._requests.put(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=self.watch_id)))
        self._requests.put(_CLOSED)
        self._call.cancel()
        try:
            # Wakes a consumer blocked in get() from another thread.
            self._responses.put_nowait(_CLOSED)
        except queue.Full:
            pass
        if threading.current_thread() is not self._reader:
            self._reader.join(5)

    cancel = close

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
