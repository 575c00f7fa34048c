# Producer: batches records per partition, sends them idempotently, resolves a Future per record on the durable ack.
from __future__ import annotations

import collections
import itertools
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import grpc

from pier._proto.pier.log.v1 import log_pb2
from pier.errors import PierError, ResourceExhaustedError, error_for, from_rpc_error, status_code
from pier.kv import Key, to_bytes

if TYPE_CHECKING:
    from pier.client import Client

# Transport-level failures after which the same request may be resent: with a producer id and
# sequences the server recognises a batch it already stored and answers `duplicate`.
# RESOURCE_EXHAUSTED is left out: it is also how an oversized message is refused.
_RETRIABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
# Framing overhead per record (tags, lengths, timestamp), so batch_size tracks the encoded size.
_RECORD_OVERHEAD = 16


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's Utils.murmur2), as an unsigned 32-bit value: keyed
    records land on the same partitions as with Kafka's clients and the server's by-key mode."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, extra = length & ~3, length % 4
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class RecordMetadata:
    """Where a record was stored. `duplicate` is true when a resend found it already stored."""
    topic: str
    partition: int
    offset: int
    duplicate: bool = False


class _Batch:
    __slots__ = ("topic", "partition", "records", "futures", "size", "created", "base_sequence", "deadline")

    def __init__(self, topic: str, partition: int, deadline: float):
        self.topic = topic
        self.partition = partition
        self.records: List[log_pb2.Record] = []
        self.futures: List[Future] = []
        self.size = 0
        self.created = time.monotonic()
        self.base_sequence = 0
        self.deadline = deadline


Headers = Union[Mapping[Key, Key], Sequence[Tuple[Key, Key]], None]


class Producer:
    """Appends records to topics. `send()` queues a record and returns a Future that resolves
    to its RecordMetadata once the server has it on disk (or fails with a PierError).

    Records for one partition are batched until `batch_size` bytes or `linger_ms` have passed.
    With `idempotent=True` (the default) the producer takes a producer id and numbers its batches
    per partition, so a resend after a lost reply never stores a record twice. One request is in
    flight at a time, which keeps each partition's records in the order they were sent."""

    def __init__(self, client: "Client", *, batch_size: int = 16384, linger_ms: float = 5,
                 idempotent: bool = True, max_buffered_records: int = 100_000, max_block: float = 60.0,
                 delivery_timeout: float = 120.0, retry_backoff_ms: float = 100):
        self._client = client
        self.batch_size = batch_size
        self.linger = linger_ms / 1000.0
        self.idempotent = idempotent
        self.max_buffered_records = max_buffered_records
        self.max_block = max_block
        self.delivery_timeout = delivery_timeout
        self.retry_backoff = retry_backoff_ms / 1000.0
        self.producer_id = 0
        self._cond = threading.Condition()
        self._open: Dict[Tuple[str, int], _Batch] = {}
        self._ready: collections.deque = collections.deque()
        self._partitions: Dict[str, int] = {}
        self._sticky: Dict[str, int] = {}
        self._round_robin = itertools.count()
        self._sequences: Dict[Tuple[str, int], int] = {}
        self._unacked = 0
        self._flushing = 0
        self._closing = False
        self._closed = False
        self._sender = threading.Thread(target=self._run, name="pier-producer", daemon=True)
        self._sender.start()

    # --- the caller's side ----------------------------------------------------------------------

    def partitions_for(self, topic: str) -> int:
        """The topic's partition count (looked up once, then cached)."""
        count = self._partitions.get(topic)
        if count is None:
            count = len(self._client.admin.describe_topic(topic).partitions)
            self._partitions[topic] = count
        return count

    def send(self, topic: str, value: Optional[Key], key: Optional[Key] = None, *, partition: Optional[int] = None,
             headers: Headers = None, timestamp_ms: int = 0) -> "Future[RecordMetadata]":
        """Queues one record. `value=None` sends a tombstone (deletes the key on a compacted topic).
        Without `partition`, keyed records go to murmur2(key) % partitions as with Kafka, and
        keyless ones to one partition per batch, in turn."""
        if self._closing:
            raise error_for(grpc.StatusCode.FAILED_PRECONDITION, "producer is closed")
        key_bytes = to_bytes(key) if key is not None else b""
        count = self.partitions_for(topic)
        record = log_pb2.Record(key=key_bytes, value=to_bytes(value) if value is not None else b"",
                                tombstone=value is None, timestamp_ms=timestamp_ms,
                                headers=[log_pb2.RecordHeader(key=to_bytes(k), value=to_bytes(v))
                                         for k, v in (headers.items() if isinstance(headers, Mapping) else headers or ())])
        size = len(key_bytes) + len(record.value) + sum(len(h.key) + len(h.value) for h in record.headers) + _RECORD_OVERHEAD
        future: Future = Future()
        future.set_running_or_notify_cancel()  # a queued record cannot be taken back
        deadline = time.monotonic() + self.max_block
        with self._cond:
            while self._unacked >= self.max_buffered_records and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ResourceExhaustedError(
                        f"producer buffer full ({self.max_buffered_records} records unacknowledged for {self.max_block} s)",
                        grpc.StatusCode.RESOURCE_EXHAUSTED)
                self._cond.wait(left)
            if partition is None:
                if key_bytes:
                    partition = partition_for_key(key_bytes, count)
                else:
                    partition = self._sticky.get(topic)
                    if partition is None:
                        partition = next(self._round_robin) % count
                        self._sticky[topic] = partition
            elif not 0 <= partition < count:
                raise error_for(grpc.StatusCode.INVALID_ARGUMENT,
                                f"topic {topic!r} has no partition {partition} (it has {count})")
            batch = self._open.get((topic, partition))
            if batch is not None and batch.records and batch.size + size > self.batch_size:
                self._seal(batch)
                batch = None
            if batch is None:
                batch = _Batch(topic, partition, time.monotonic() + self.delivery_timeout)
                self._open[(topic, partition)] = batch
            batch.records.append(record)
            batch.futures.append(future)
            batch.size += size
            self._unacked += 1
            if batch.size >= self.batch_size:
                self._seal(batch)
            self._cond.notify_all()
        return future

    def flush(self, timeout: Optional[float] = None) -> None:
        """Sends everything queued now and waits for every ack (TimeoutError after `timeout`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._unacked > 0 and self._sender.is_alive():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"{self._unacked} records still unacknowledged after {timeout} s")
                    self._cond.wait(left)
            finally:
                self._flushing -= 1

    def close(self, timeout: Optional[float] = None) -> None:
        """Flushes, then stops the sender; records still unsent after `timeout` fail."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._sender.join(10)
            self._closed = True
            self._fail_all(PierError("producer closed before the record was sent", grpc.StatusCode.CANCELLED))

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the sender thread ------------------------------------------------------------------------

    def _seal(self, batch: _Batch) -> None:
        # Caller holds the lock. A sealed batch is full or lingered long enough: it goes out as is.
        if self._open.get((batch.topic, batch.partition)) is batch:
            del self._open[(batch.topic, batch.partition)]
        if self._sticky.get(batch.topic) == batch.partition:
            del self._sticky[batch.topic]
        self._ready.append(batch)

    def _drain(self) -> List[_Batch]:
        # Caller holds the lock: waits until something is due, then takes every due batch.
        while True:
            now = time.monotonic()
            for batch in list(self._open.values()):
                if self._flushing or self._closing or now - batch.created >= self.linger:
                    self._seal(batch)
            if self._ready:
                batches = list(self._ready)
                self._ready.clear()
                return batches
            if self._closing:
                return []
            next_due = min((b.created + self.linger for b in self._open.values()), default=None)
            self._cond.wait(None if next_due is None else max(next_due - now, 0.0005))

    def _run(self) -> None:
        while True:
            with self._cond:
                batches = self._drain()
            if not batches:
                return
            try:
                if self.idempotent and not self.producer_id:
                    reply = self._client.call(self._client.log_stub.InitProducer, log_pb2.InitProducerRequest())
                    self.producer_id = reply.producer_id
                by_topic: Dict[str, List[_Batch]] = collections.defaultdict(list)
                for batch in batches:
                    by_topic[batch.topic].append(batch)
                for topic, group in by_topic.items():
                    self._send(topic, group)
            except PierError as error:
                for batch in batches:
                    self._complete(batch, error=error)
            except Exception as error:  # never let the sender die silently with futures pending
                for batch in batches:
                    self._complete(batch, error=PierError(f"producer failed: {error!r}"))

    def _send(self, topic: str, batches: List[_Batch]) -> None:
        for batch in batches:
            key = (topic, batch.partition)
            batch.base_sequence = self._sequences.get(key, 0)
            self._sequences[key] = batch.base_sequence + len(batch.records)
        request = log_pb2.ProduceRequest(topic=topic, producer_id=self.producer_id, batches=[
            log_pb2.ProduceBatch(partitioning=log_pb2.PARTITIONING_EXPLICIT, partition=b.partition,
                                 base_sequence=b.base_sequence if self.idempotent else 0, records=b.records)
            for b in batches])
        deadline = min(b.deadline for b in batches)
        while True:
            try:
                reply = self._client.log_stub.Produce(request, timeout=self._client.timeout)
                break
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                if not (self.idempotent and error.code in _RETRIABLE) or time.monotonic() + self.retry_backoff >= deadline:
                    self._reset_sequences()
                    for batch in batches:
                        self._complete(batch, error=error)
                    return
                time.sleep(self.retry_backoff)
        failed = False
        for result in reply.results:
            batch = batches[result.batch_index]
            if result.error_code:
                failed = True
                self._complete(batch, error=error_for(status_code(result.error_code), result.error_message))
            else:
                self._complete(batch, result=result)
        for batch in batches:
            if batch.futures:
                failed = True
                self._complete(batch, error=PierError("the server's reply had no result for this batch"))
        if failed:
            # A batch the server refused leaves a gap in the partition's sequence numbers that would
            # fail every later batch: start again under a new producer id.
            self._reset_sequences()

    def _reset_sequences(self) -> None:
        if self.idempotent:
            self.producer_id = 0
            self._sequences.clear()

    def _complete(self, batch: _Batch, result: Optional[log_pb2.ProduceResult] = None,
                  error: Optional[PierError] = None) -> None:
        for i, future in enumerate(batch.futures):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(RecordMetadata(batch.topic, result.partition, result.base_offset + i, result.duplicate))
        with self._cond:
            self._unacked -= len(batch.futures)
            batch.futures = []
            self._cond.notify_all()

    def _fail_all(self, error: PierError) -> None:
        with self._cond:
            pending = list(self._open.values()) + list(self._ready)
            self._open.clear()
            self._ready.clear()
        for batch in pending:
            self._complete(batch, error=error)
