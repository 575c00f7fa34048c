# AsyncConsumer: the Consumer for asyncio code, on grpc.aio (group session, Subscribe streams, commits).
from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Set, Union

import grpc

from pier._proto.pier.log.v1 import log_pb2, log_pb2_grpc
from pier.consumer import _ASSIGNORS, _RESETS, ConsumerRecord, TopicPartition, decode_batches
from pier.errors import OutOfRangeError, PierError, error_for, from_rpc_error

if TYPE_CHECKING:
    from pier.client import Client


class AsyncConsumer:
    """`async with AsyncConsumer(client_or_endpoint, "topic", group_id="g") as c:
    async for record in c: ...`. The same model as Consumer (group assignment, committed offsets,
    `consumer_timeout` ending iteration, position advanced per record handed out), with every
    stream a task on the running event loop and its own grpc.aio channel."""

    MAX_BUFFERED_CHUNKS = 64

    def __init__(self, target: Union["Client", str], topics: Union[str, Iterable[str]], *,
                 group_id: Optional[str] = None, auto_offset_reset: str = "earliest",
                 consumer_timeout: Optional[float] = None, session_timeout_ms: int = 10000,
                 assignor: str = "range", client_id: Optional[str] = None, max_bytes: int = 1 << 20,
                 timeout: Optional[float] = None):
        if auto_offset_reset not in _RESETS:
            raise ValueError("auto_offset_reset must be 'earliest' or 'latest'")
        self.endpoint = target if isinstance(target, str) else target.endpoint
        self.timeout = timeout if timeout is not None else (10.0 if isinstance(target, str) else target.timeout)
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.consumer_timeout = consumer_timeout
        self.max_bytes = max_bytes
        self._join = log_pb2.JoinGroup(group_id=group_id or "", topics=self.topics,
                                       client_id=client_id or f"pier-python-{uuid.uuid4().hex[:8]}",
                                       session_timeout_ms=session_timeout_ms, assignor=_ASSIGNORS[assignor])
        self.member_id = ""
        self.generation = -1
        self._heartbeat_interval = 3.0
        self._channel: Optional[grpc.aio.Channel] = None
        self._stub: Optional[log_pb2_grpc.LogStub] = None
        self._session = None
        self._tasks: List[asyncio.Task] = []
        self._streams: Dict[TopicPartition, asyncio.Task] = {}
        self._queue: Optional[asyncio.Queue] = None
        self._pending: Optional[tuple] = None
        self._assignment: Set[TopicPartition] = set()
        self._positions: Dict[TopicPartition, int] = {}
        self._epoch = 0
        self._buffer: List[ConsumerRecord] = []
        self._error: Optional[PierError] = None
        self._closed = False

    async def _call(self, method, request):
        try:
            return await method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    async def start(self) -> "AsyncConsumer":
        self._channel = grpc.aio.insecure_channel(self.endpoint)
        self._stub = log_pb2_grpc.LogStub(self._channel)
        self._queue = asyncio.Queue(self.MAX_BUFFERED_CHUNKS)
        try:
            if self.group_id is not None:
                self._session = self._stub.JoinGroup()
                await self._session.write(log_pb2.JoinGroupRequest(join=self._join))
                first = await asyncio.wait_for(self._session.read(), self.timeout)
                if first is grpc.aio.EOF:
                    raise PierError(f"group {self.group_id!r} session ended before an assignment")
                self._received(first)
                self._tasks.append(asyncio.create_task(self._read_session()))
                self._tasks.append(asyncio.create_task(self._heartbeats()))
            else:
                everything = set()
                for topic in self.topics:
                    d = await self._call(self._stub.DescribeTopic, log_pb2.DescribeTopicRequest(topic=topic))
                    everything |= {(topic, p.partition) for p in d.topic.partitions}
                self._pending = (0, everything)
            await self._apply_assignment()
        except grpc.RpcError as error:
            await self.close()
            raise from_rpc_error(error) from None
        except BaseException:
            await self.close()
            raise
        return self

    # --- group session -----------------------------------------------------------------------------

    def _received(self, response: log_pb2.JoinGroupResponse) -> None:
        self.member_id = response.member_id
        if response.heartbeat_interval_ms > 0:
            self._heartbeat_interval = response.heartbeat_interval_ms / 1000.0
        self._pending = (response.generation, {(tp.topic, p) for tp in response.assignment for p in tp.partitions})

    async def _read_session(self) -> None:
        try:
            while True:
                response = await self._session.read()
                if response is grpc.aio.EOF:
                    if not self._closed:
                        self._error = PierError(f"group {self.group_id!r} session ended by the server")
                    return
                self._received(response)
        except grpc.RpcError as error:
            if not self._closed:
                self._error = from_rpc_error(error)

    async def _heartbeats(self) -> None:
        try:
            while not self._closed:
                await asyncio.sleep(self._heartbeat_interval)
                await self._session.write(log_pb2.JoinGroupRequest(
                    heartbeat=log_pb2.GroupHeartbeat(generation=self.generation)))
        except (grpc.RpcError, asyncio.InvalidStateError):
            pass  # the session reader reports why the stream ended

    # --- partitions --------------------------------------------------------------------------------

    async def _apply_assignment(self) -> None:
        if self._pending is None:
            return
        (generation, assignment), self._pending = self._pending, None
        self.generation = generation
        for tp in self._assignment - assignment:
            self._positions.pop(tp, None)
        self._assignment = set(assignment)
        if self.group_id is not None and assignment:
            by_topic: Dict[str, List[int]] = {}
            for topic, partition in sorted(assignment):
                by_topic.setdefault(topic, []).append(partition)
            reply = await self._call(self._stub.FetchOffsets, log_pb2.FetchOffsetsRequest(
                group_id=self.group_id,
                partitions=[log_pb2.TopicPartitions(topic=t, partitions=p) for t, p in by_topic.items()]))
            for o in reply.offsets:
                tp = (o.topic, o.partition)
                if tp in assignment and tp not in self._positions and o.offset >= 0:
                    self._positions[tp] = o.offset
        await self._restart_streams()

    async def _restart_streams(self) -> None:
        for task in self._streams.values():
            task.cancel()
        await asyncio.gather(*self._streams.values(), return_exceptions=True)
        self._streams.clear()
        self._buffer = []
        self._epoch += 1
        for tp in sorted(self._assignment):
            self._streams[tp] = asyncio.create_task(self._stream(tp, self._epoch, self._positions.get(tp)))

    async def _stream(self, tp: TopicPartition, epoch: int, offset: Optional[int]) -> None:
        topic, partition = tp
        reset_once = False
        while True:
            if offset is None:
                request = log_pb2.SubscribeRequest(topic=topic, partition=partition, max_bytes=self.max_bytes,
                                                   start=_RESETS[self.auto_offset_reset])
            else:
                request = log_pb2.SubscribeRequest(topic=topic, partition=partition, max_bytes=self.max_bytes,
                                                   start=log_pb2.START_POSITION_OFFSET, offset=offset)
            call = self._stub.Subscribe(request)
            try:
                async for response in call:
                    records = decode_batches(topic, partition, response.batches, offset or 0)
                    if records:
                        offset = records[-1].offset + 1
                        await self._queue.put((epoch, tp, records))
                    elif response.next_offset:
                        offset = max(offset or 0, response.next_offset)
                return
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                # Retention deleted the committed offset: fall back to the reset policy, once.
                if isinstance(error, OutOfRangeError) and offset is not None and not reset_once:
                    reset_once, offset = True, None
                    continue
                await self._queue.put((epoch, tp, error))
                return
            finally:
                call.cancel()

    # --- the caller's side ---------------------------------------------------------------------------

    @property
    def assignment(self) -> Set[TopicPartition]:
        return set(self._assignment)

    def position(self, topic: str, partition: int) -> Optional[int]:
        return self._positions.get((topic, partition))

    async def _next_chunk(self, timeout: Optional[float]) -> List[ConsumerRecord]:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._closed:
            if self._error is not None:
                raise self._error
            await self._apply_assignment()
            # Wake at least twice a second to pick up rebalances and session failures.
            left = 0.5 if deadline is None else min(0.5, deadline - loop.time())
            if left <= 0:
                return []
            try:
                epoch, tp, item = await asyncio.wait_for(self._queue.get(), left)
            except asyncio.TimeoutError:
                continue
            if epoch != self._epoch or tp not in self._assignment:
                continue  # read before a rebalance: no longer ours
            if isinstance(item, PierError):
                raise item
            start = self._positions.get(tp)
            records = [r for r in item if start is None or r.offset >= start]
            if records:
                return records
        return []

    async def poll(self, timeout: Optional[float] = 1.0, max_records: Optional[int] = None) -> List[ConsumerRecord]:
        """Records that arrived within `timeout` seconds (possibly []); advances the positions."""
        await self._apply_assignment()  # first: a rebalance drops what is buffered for revoked partitions
        if self._buffer:
            records, self._buffer = self._buffer, []
        else:
            records = await self._next_chunk(timeout)
        if max_records is not None and len(records) > max_records:
            records, self._buffer = records[:max_records], records[max_records:]
        for r in records:
            self._positions[(r.topic, r.partition)] = r.offset + 1
        return records

    def __aiter__(self) -> "AsyncConsumer":
        return self

    async def __anext__(self) -> ConsumerRecord:
        # One record at a time, so commit() never covers records the caller has not seen.
        records = await self.poll(self.consumer_timeout, max_records=1)
        if not records:
            raise StopAsyncIteration
        return records[0]

    async def commit(self, offsets: Optional[Dict[TopicPartition, int]] = None, metadata: str = "") -> None:
        """Commits `offsets` (default: the position of every assigned partition)."""
        if self.group_id is None:
            raise error_for(grpc.StatusCode.FAILED_PRECONDITION, "commit needs a consumer created with group_id")
        offsets = dict(self._positions) if offsets is None else offsets
        if offsets:
            await self._call(self._stub.CommitOffsets, log_pb2.CommitOffsetsRequest(
                group_id=self.group_id, member_id=self.member_id, generation=self.generation,
                offsets=[log_pb2.TopicPartitionOffset(topic=t, partition=p, offset=o, metadata=metadata)
                         for (t, p), o in sorted(offsets.items())]))

    async def close(self) -> None:
        """Leaves the group and stops every stream."""
        if self._closed:
            return
        self._closed = True
        for task in self._streams.values():
            task.cancel()
        await asyncio.gather(*self._streams.values(), return_exceptions=True)
        # The heartbeat task stops before `leave` is written: one writer at a time on the stream.
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks[1:], return_exceptions=True)
        if self._session is not None:
            try:
                await self._session.write(log_pb2.JoinGroupRequest(leave=log_pb2.LeaveGroup()))
                await self._session.done_writing()
                await asyncio.wait_for(asyncio.gather(*self._tasks[:1], return_exceptions=True), 5)
            except (grpc.RpcError, asyncio.InvalidStateError, asyncio.TimeoutError):
                pass
            self._session.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()

    async def __aenter__(self) -> "AsyncConsumer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()
