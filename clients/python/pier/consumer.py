# Consumer: group membership on the JoinGroup stream, one Subscribe stream per assigned partition, commits.
from __future__ import annotations

import itertools
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

import grpc

from pier._proto.pier.log.v1 import log_pb2
from pier.errors import DeadlineExceededError, OutOfRangeError, PierError, error_for, from_rpc_error

if TYPE_CHECKING:
    from pier.client import Client

TopicPartition = Tuple[str, int]
_ASSIGNORS = {"range": log_pb2.ASSIGNOR_RANGE, "round_robin": log_pb2.ASSIGNOR_ROUND_ROBIN,
              "sticky": log_pb2.ASSIGNOR_STICKY}
_RESETS = {"earliest": log_pb2.START_POSITION_EARLIEST, "latest": log_pb2.START_POSITION_LATEST}
_END = object()


@dataclass(frozen=True)
class ConsumerRecord:
    topic: str
    partition: int
    offset: int
    key: Optional[bytes]
    # None for a tombstone.
    value: Optional[bytes]
    headers: Tuple[Tuple[bytes, bytes], ...]
    timestamp_ms: int


def decode_batches(topic: str, partition: int, batches, from_offset: int) -> List[ConsumerRecord]:
    """Records of stored batches at or after `from_offset` (a read starts with the whole batch
    that holds the offset asked for, so earlier records of that batch are skipped here)."""
    out = []
    for batch in batches:
        for r in batch.records:
            offset = batch.base_offset + r.offset_delta
            if offset < from_offset:
                continue
            out.append(ConsumerRecord(topic, partition, offset, r.key or None, None if r.tombstone else r.value,
                                      tuple((h.key, h.value) for h in r.headers), r.timestamp_ms))
    return out


class _PartitionStream:
    """One Subscribe call feeding the consumer's shared queue from a reader thread."""

    def __init__(self, consumer: "Consumer", tp: TopicPartition, epoch: int, offset: Optional[int]):
        self.tp = tp
        self._consumer = consumer
        self._epoch = epoch
        self._stopped = threading.Event()
        self._call = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(offset,), name=f"pier-subscribe-{tp[0]}-{tp[1]}",
                                        daemon=True)
        self._thread.start()

    def _open(self, offset: Optional[int]):
        topic, partition = self.tp
        if offset is None:
            request = log_pb2.SubscribeRequest(topic=topic, partition=partition, max_bytes=self._consumer.max_bytes,
                                               start=_RESETS[self._consumer.auto_offset_reset])
        else:
            request = log_pb2.SubscribeRequest(topic=topic, partition=partition, max_bytes=self._consumer.max_bytes,
                                               start=log_pb2.START_POSITION_OFFSET, offset=offset)
        with self._lock:
            if self._stopped.is_set():
                return None
            self._call = self._consumer._client.log_stub.Subscribe(request)
            return self._call

    def _run(self, offset: Optional[int]) -> None:
        reset_once = False
        while not self._stopped.is_set():
            call = self._open(offset)
            if call is None:
                return
            try:
                for response in call:
                    records = decode_batches(self.tp[0], self.tp[1], response.batches, offset or 0)
                    if records:
                        offset = records[-1].offset + 1
                        if not self._consumer._deliver((self._epoch, self.tp, records), self._stopped):
                            return
                    elif response.next_offset:
                        offset = max(offset or 0, response.next_offset)
                return
            except grpc.RpcError as rpc_error:
                if self._stopped.is_set():
                    return
                error = from_rpc_error(rpc_error)
                # A committed offset that retention has since deleted: start over from the reset
                # policy, as Kafka's auto.offset.reset does.
                if isinstance(error, OutOfRangeError) and offset is not None and not reset_once:
                    reset_once, offset = True, None
                    continue
                self._consumer._deliver((self._epoch, self.tp, error), self._stopped)
                return

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            if self._call is not None:
                self._call.cancel()

    def join(self) -> None:
        self._thread.join(5)


class _GroupSession:
    """The member's JoinGroup stream. Requests come from a generator that grpc drains on its
    own thread: it yields `join`, then a heartbeat whenever the interval passes, then `leave`."""

    def __init__(self, consumer: "Consumer", group_id: str, topics: List[str], session_timeout_ms: int,
                 assignor: str, client_id: str):
        self.group_id = group_id
        self.member_id = ""
        self.generation = -1
        self.heartbeat_interval = 3.0
        self._consumer = consumer
        self._leave = threading.Event()
        self._wake: "queue.Queue" = queue.Queue()
        self._join = log_pb2.JoinGroup(group_id=group_id, topics=topics, client_id=client_id,
                                       session_timeout_ms=session_timeout_ms, assignor=_ASSIGNORS[assignor])
        self._first = threading.Event()
        self.error: Optional[PierError] = None
        self._call = consumer._client.log_stub.JoinGroup(self._requests())
        self._reader = threading.Thread(target=self._read, name="pier-group-session", daemon=True)
        self._reader.start()
        if not self._first.wait(consumer._client.timeout):
            self.close()
            raise DeadlineExceededError(f"no assignment from group {group_id!r} in time",
                                        grpc.StatusCode.DEADLINE_EXCEEDED)
        if self.error is not None:
            self.close()
            raise self.error

    def _requests(self):
        yield log_pb2.JoinGroupRequest(join=self._join)
        while not self._leave.is_set():
            try:
                self._wake.get(timeout=self.heartbeat_interval)
            except queue.Empty:
                pass
            if self._leave.is_set():
                break
            yield log_pb2.JoinGroupRequest(heartbeat=log_pb2.GroupHeartbeat(generation=self.generation))
        yield log_pb2.JoinGroupRequest(leave=log_pb2.LeaveGroup())

    def _read(self) -> None:
        try:
            for response in self._call:
                self.member_id = response.member_id
                if response.heartbeat_interval_ms > 0:
                    self.heartbeat_interval = response.heartbeat_interval_ms / 1000.0
                assignment = {(tp.topic, p) for tp in response.assignment for p in tp.partitions}
                self._consumer._assigned(response.generation, assignment)
                self.generation = response.generation
                self._first.set()
        except grpc.RpcError as rpc_error:
            if not self._leave.is_set():
                self.error = from_rpc_error(rpc_error)
                self._consumer._deliver((None, None, self.error), None)
        finally:
            if not self._first.is_set() and self.error is None and not self._leave.is_set():
                self.error = PierError(f"group {self.group_id!r} session ended before an assignment")
            self._first.set()

    def close(self) -> None:
        """Leaves the group (the server rebalances the rest at once) and ends the stream."""
        self._leave.set()
        self._wake.put(None)
        self._reader.join(5)
        self._call.cancel()


class Consumer:
    """Reads records from topics. With `group_id`, the consumer joins the group and reads the
    partitions the group assigns it, starting at the group's committed offsets; without, it
    reads every partition of the topics. Where no offset is committed it starts at
    `auto_offset_reset` ("earliest" or "latest").

    Iterate for records (iteration ends after `consumer_timeout` seconds without one; None waits
    forever), or call `poll(timeout)`. `commit()` stores the position after the last record
    handed out. Partitions stream independently, so order holds within a partition only."""

    # Record lists buffered across partitions before readers stop reading (flow control then
    # holds the server back).
    MAX_BUFFERED_CHUNKS = 64

    def __init__(self, client: "Client", topics: Union[str, Iterable[str]], *, group_id: Optional[str] = None,
                 auto_offset_reset: str = "earliest", consumer_timeout: Optional[float] = None,
                 session_timeout_ms: int = 10000, assignor: str = "range", client_id: Optional[str] = None,
                 enable_auto_commit: bool = False, auto_commit_interval: float = 5.0, max_bytes: int = 1 << 20):
        if auto_offset_reset not in _RESETS:
            raise ValueError("auto_offset_reset must be 'earliest' or 'latest'")
        self._client = client
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.consumer_timeout = consumer_timeout
        self.enable_auto_commit = enable_auto_commit and group_id is not None
        self.auto_commit_interval = auto_commit_interval
        self.max_bytes = max_bytes
        self._queue: "queue.Queue" = queue.Queue(self.MAX_BUFFERED_CHUNKS)
        self._lock = threading.Lock()
        self._pending_assignment: Optional[Tuple[int, Set[TopicPartition]]] = None
        self._assignment: Set[TopicPartition] = set()
        self._generation = -1
        self._epochs = itertools.count(1)
        self._epoch = 0
        self._streams: Dict[TopicPartition, _PartitionStream] = {}
        self._positions: Dict[TopicPartition, int] = {}
        self._seeks: Dict[TopicPartition, int] = {}
        self._buffer: List[ConsumerRecord] = []
        self._last_commit = time.monotonic()
        self._closed = False
        self._group: Optional[_GroupSession] = None
        if group_id is not None:
            self._group = _GroupSession(self, group_id, self.topics, session_timeout_ms, assignor,
                                        client_id or f"pier-python-{uuid.uuid4().hex[:8]}")
        else:
            everything = set()
            for topic in self.topics:
                for p in client.admin.describe_topic(topic).partitions:
                    everything.add((topic, p.partition))
            self._assigned(0, everything)
        self._apply_assignment()

    # --- called from reader threads ----------------------------------------------------------------

    def _assigned(self, generation: int, assignment: Set[TopicPartition]) -> None:
        with self._lock:
            self._pending_assignment = (generation, assignment)

    def _deliver(self, item, stopped: Optional[threading.Event]) -> bool:
        while stopped is None or not stopped.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                if stopped is None:
                    return False
        return False

    # --- the caller's thread -------------------------------------------------------------------------

    @property
    def assignment(self) -> Set[TopicPartition]:
        """The partitions this consumer reads now."""
        self._apply_assignment()
        return set(self._assignment)

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def member_id(self) -> str:
        return self._group.member_id if self._group else ""

    def position(self, topic: str, partition: int) -> Optional[int]:
        """The offset of the next record this consumer will hand out for the partition."""
        return self._positions.get((topic, partition))

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Reads the partition from `offset` next."""
        self._seeks[(topic, partition)] = offset
        self._restart_streams()

    def _apply_assignment(self) -> None:
        with self._lock:
            pending, self._pending_assignment = self._pending_assignment, None
        if pending is None:
            return
        generation, assignment = pending
        # No commit for revoked partitions here: the server has already moved the group to the
        # new generation, so it would be fenced. Their records since the last commit are read
        # again by the new owner (at-least-once).
        self._generation = generation
        revoked = self._assignment - assignment
        self._assignment = set(assignment)
        for tp in revoked:
            self._positions.pop(tp, None)
        if self.group_id is not None and assignment:
            committed = self._client.admin.committed_offsets(self.group_id, self._by_topic(assignment))
            for tp in assignment:
                if tp not in self._positions and tp in committed and committed[tp] >= 0:
                    self._positions[tp] = committed[tp]
        self._restart_streams()

    def _restart_streams(self) -> None:
        for stream in self._streams.values():
            stream.stop()
        for stream in self._streams.values():
            stream.join()
        self._streams.clear()
        self._buffer = []
        self._epoch = next(self._epochs)
        for tp in sorted(self._assignment):
            if tp in self._seeks:
                self._positions[tp] = self._seeks.pop(tp)
            self._streams[tp] = _PartitionStream(self, tp, self._epoch, self._positions.get(tp))

    @staticmethod
    def _by_topic(tps: Iterable[TopicPartition]) -> Dict[str, List[int]]:
        out: Dict[str, List[int]] = {}
        for topic, partition in sorted(tps):
            out.setdefault(topic, []).append(partition)
        return out

    def _next_chunk(self, timeout: Optional[float]) -> List[ConsumerRecord]:
        """The next records received for the current assignment ([] if none within `timeout`)."""
        self._apply_assignment()  # first: a rebalance drops what is buffered for revoked partitions
        if self._buffer:
            chunk, self._buffer = self._buffer, []
            return chunk
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            if self._group is not None and self._group.error is not None:
                raise self._group.error
            self._apply_assignment()
            self._maybe_auto_commit()
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if left <= 0:
                return []
            try:
                epoch, tp, item = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if epoch is None:
                continue  # the group session failed: raised from its error above
            if epoch != self._epoch or tp not in self._assignment:
                continue  # read before a rebalance or seek: no longer ours
            if isinstance(item, PierError):
                raise item
            start = self._positions.get(tp)
            records = [r for r in item if start is None or r.offset >= start]
            if records:
                return records
        return []

    def poll(self, timeout: Optional[float] = 1.0, max_records: Optional[int] = None) -> List[ConsumerRecord]:
        """Records that arrived within `timeout` seconds (possibly []); advances the positions."""
        records = self._next_chunk(timeout)
        if max_records is not None and len(records) > max_records:
            records, self._buffer = records[:max_records], records[max_records:]
        for r in records:
            self._positions[(r.topic, r.partition)] = r.offset + 1
        return records

    def __iter__(self) -> Iterator[ConsumerRecord]:
        while not self._closed:
            records = self._next_chunk(self.consumer_timeout)
            if not records:
                return
            for i, r in enumerate(records):
                self._positions[(r.topic, r.partition)] = r.offset + 1
                # Positions advance per record handed out, so a commit after a `break` in the
                # caller's loop does not skip records the caller never saw.
                self._buffer = records[i + 1:]
                yield r
            self._buffer = []

    def commit(self, offsets: Optional[Dict[TopicPartition, int]] = None, metadata: str = "") -> None:
        """Commits `offsets` ({(topic, partition): next offset}), by default the positions of
        every assigned partition. FailedPreconditionError if the group has rebalanced since."""
        if self.group_id is None:
            raise error_for(grpc.StatusCode.FAILED_PRECONDITION, "commit needs a consumer created with group_id")
        offsets = dict(self._positions) if offsets is None else offsets
        if not offsets:
            return
        request = log_pb2.CommitOffsetsRequest(
            group_id=self.group_id, member_id=self.member_id, generation=self._generation,
            offsets=[log_pb2.TopicPartitionOffset(topic=t, partition=p, offset=o, metadata=metadata)
                     for (t, p), o in sorted(offsets.items())])
        self._client.call(self._client.log_stub.CommitOffsets, request)
        self._last_commit = time.monotonic()

    def committed(self, topic: str, partition: int) -> Optional[int]:
        if self.group_id is None:
            return None
        return self._client.admin.committed_offsets(self.group_id, {topic: [partition]}).get((topic, partition))

    def _maybe_auto_commit(self) -> None:
        if self.enable_auto_commit and time.monotonic() - self._last_commit >= self.auto_commit_interval:
            try:
                self.commit()
            except PierError:
                self._last_commit = time.monotonic()

    def close(self) -> None:
        """Commits (with auto-commit), leaves the group and stops every stream."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.enable_auto_commit:
                try:
                    self.commit()
                except PierError:
                    pass
        finally:
            for stream in self._streams.values():
                stream.stop()
            if self._group is not None:
                self._group.close()
            for stream in self._streams.values():
                stream.join()
            self._streams.clear()

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
