"""Consumer groups and work queues as clients see them: rebalances under load, fenced commits, leases."""
import queue
import random
import threading
import time

import grpc
import pytest

from log_fixtures import connect, log, pb, produce, read_all, records, status_of, unique_topic, wait_until  # noqa: F401


class Member:
    """One group member: a JoinGroup stream, heartbeats, and the latest assignment pushed to it."""

    def __init__(self, stub, group, topics, client_id="member", session_timeout_ms=10000,
                 assignor=pb.ASSIGNOR_RANGE):
        self.requests = queue.Queue()
        self.requests.put(pb.JoinGroupRequest(join=pb.JoinGroup(
            group_id=group, topics=topics, client_id=client_id, session_timeout_ms=session_timeout_ms,
            assignor=assignor)))
        self.call = stub.JoinGroup(iter(self.requests.get, None), timeout=300)
        self.lock = threading.Condition()
        self.assignment = None  # (generation, frozenset of (topic, partition))
        self.member_id = None
        self.error = None
        self.closed = False
        self.interval = 1.0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._heartbeat, daemon=True).start()

    def _read(self):
        try:
            for reply in self.call:
                parts = frozenset((tp.topic, p) for tp in reply.assignment for p in tp.partitions)
                with self.lock:
                    self.member_id = reply.member_id
                    self.interval = reply.heartbeat_interval_ms / 1000
                    self.assignment = (reply.generation, parts)
                    self.lock.notify_all()
        except grpc.RpcError as error:
            self.error = error
        finally:
            with self.lock:
                self.closed = True
                self.lock.notify_all()

    def _heartbeat(self):
        while not self.closed:
            time.sleep(self.interval)
            with self.lock:
                if self.closed or self.assignment is None:
                    continue
                generation = self.assignment[0]
            self.requests.put(pb.JoinGroupRequest(heartbeat=pb.GroupHeartbeat(generation=generation)))

    def wait_assignment(self, newer_than=0, timeout=30):
        with self.lock:
            ok = self.lock.wait_for(lambda: self.closed or (self.assignment and self.assignment[0] > newer_than),
                                    timeout)
            assert ok and self.assignment, f"no assignment after generation {newer_than}: {self.error}"
            return self.assignment

    def current(self):
        with self.lock:
            return self.assignment

    def leave(self):
        self.requests.put(pb.JoinGroupRequest(leave=pb.LeaveGroup()))
        self.requests.put(None)
        with self.lock:
            self.lock.wait_for(lambda: self.closed, 30)
        self.closed = True


def create(stub, topic, partitions, **configs):
    stub.CreateTopic(pb.CreateTopicRequest(topic=topic, partitions=partitions,
                                           configs={k.replace("_", "."): str(v) for k, v in configs.items()}),
                     timeout=30)


def settle(members, timeout=30):
    """Waits until every member holds the same, newest generation; returns it."""
    def same():
        gens = {m.current()[0] if m.current() else None for m in members}
        return gens.pop() if len(gens) == 1 and None not in gens else None
    return wait_until(same, timeout=timeout, what="members to agree on a generation")


def test_assignment_covers_every_partition_once_and_rebalances(log):
    topic = unique_topic()
    create(log, topic, 4)
    group = unique_topic("group")
    a = Member(log, group, [topic], client_id="a")
    gen_a, parts_a = a.wait_assignment()
    assert parts_a == {(topic, p) for p in range(4)}
    b = Member(log, group, [topic], client_id="b")
    gen = settle([a, b])
    assert gen > gen_a
    pa, pb_ = a.current()[1], b.current()[1]
    assert pa | pb_ == {(topic, p) for p in range(4)} and not (pa & pb_) and len(pa) == len(pb_) == 2

    described = log.DescribeGroup(pb.DescribeGroupRequest(group_id=group), timeout=20)
    assert described.state == "Stable" and described.generation == gen and len(described.members) == 2
    assert group in {g.group_id for g in log.ListGroups(pb.ListGroupsRequest(), timeout=20).groups}

    b.leave()
    gen_after, parts = a.wait_assignment(newer_than=gen)
    assert parts == {(topic, p) for p in range(4)}
    a.leave()
    # A group with no members and no committed offsets is gone, as in Kafka.
    assert status_of(log.DescribeGroup, pb.DescribeGroupRequest(group_id=group))[0] == grpc.StatusCode.NOT_FOUND
    assert status_of(log.DescribeGroup, pb.DescribeGroupRequest(group_id=unique_topic("nogroup")))[0] \
        == grpc.StatusCode.NOT_FOUND


def test_stale_generation_commit_is_failed_precondition(log):
    topic = unique_topic()
    create(log, topic, 2)
    group = unique_topic("group")
    a = Member(log, group, [topic], client_id="a")
    gen1, _ = a.wait_assignment()

    def commit(member, generation, offset):
        return log.CommitOffsets(pb.CommitOffsetsRequest(
            group_id=group, member_id=member.member_id, generation=generation,
            offsets=[pb.TopicPartitionOffset(topic=topic, partition=0, offset=offset, metadata="m")]), timeout=20)

    commit(a, gen1, 5)
    b = Member(log, group, [topic], client_id="b")
    gen2 = settle([a, b])
    code, details = status_of(log.CommitOffsets, pb.CommitOffsetsRequest(
        group_id=group, member_id=a.member_id, generation=gen1,
        offsets=[pb.TopicPartitionOffset(topic=topic, partition=0, offset=9)]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert f"generation {gen1}" in details
    code, _ = status_of(log.CommitOffsets, pb.CommitOffsetsRequest(
        group_id=group, member_id="nobody", generation=gen2,
        offsets=[pb.TopicPartitionOffset(topic=topic, partition=0, offset=9)]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    commit(a, gen2, 7)
    fetched = log.FetchOffsets(pb.FetchOffsetsRequest(group_id=group), timeout=20).offsets
    assert [(o.topic, o.partition, o.offset, o.metadata) for o in fetched] == [(topic, 0, 7, "m")]
    a.leave()
    b.leave()
    # An empty group takes commits without a member (tools resetting offsets).
    log.CommitOffsets(pb.CommitOffsetsRequest(group_id=group, generation=-1, offsets=[
        pb.TopicPartitionOffset(topic=topic, partition=1, offset=3)]), timeout=20)
    fetched = log.FetchOffsets(pb.FetchOffsetsRequest(group_id=group, partitions=[
        pb.TopicPartitions(topic=topic, partitions=[1])]), timeout=20).offsets
    assert [(o.partition, o.offset) for o in fetched] == [(1, 3)]


def test_join_stream_must_start_with_join(log):
    call = log.JoinGroup(iter([pb.JoinGroupRequest(heartbeat=pb.GroupHeartbeat(generation=1))]), timeout=20)
    with pytest.raises(grpc.RpcError) as error:
        next(call)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


class Consumer(threading.Thread):
    """A group member that consumes its partitions with Fetch and commits after each batch,
    recording (partition, offset) -> [(member, generation)] for every record it processes."""

    def __init__(self, server, group, topic, name, processed, processed_lock):
        super().__init__(daemon=True)
        self.channel, self.stub = connect(server)
        self.group, self.topic, self.name = group, topic, name
        self.processed, self.processed_lock = processed, processed_lock
        self.member = Member(self.stub, group, [topic], client_id=name)
        self.stop = threading.Event()
        self.failure = None

    def run(self):
        try:
            self._consume()
        except Exception as error:  # reported by the test
            self.failure = error

    def _consume(self):
        while not self.stop.is_set():
            current = self.member.current()
            if current is None:
                time.sleep(0.01)
                continue
            generation, parts = current
            if not parts:
                time.sleep(0.02)
                continue
            committed = {(o.topic, o.partition): o.offset for o in self.stub.FetchOffsets(
                pb.FetchOffsetsRequest(group_id=self.group), timeout=20).offsets}
            for topic, partition in sorted(parts):
                if self.stop.is_set() or self.member.current()[0] != generation:
                    break
                offset = committed.get((topic, partition), 0)
                reply = self.stub.Fetch(pb.FetchRequest(topic=topic, partition=partition, offset=offset,
                                                        max_bytes=4096, max_wait_ms=50), timeout=20)
                got = records(reply.batches, offset)
                if not got:
                    continue
                with self.processed_lock:
                    for o, _ in got:
                        self.processed.setdefault((partition, o), []).append((self.member.member_id, generation))
                try:
                    self.stub.CommitOffsets(pb.CommitOffsetsRequest(
                        group_id=self.group, member_id=self.member.member_id, generation=generation,
                        offsets=[pb.TopicPartitionOffset(topic=topic, partition=partition,
                                                         offset=reply.next_offset)]), timeout=20)
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                        raise
                    break  # the group moved on: take the new assignment

    def close(self):
        self.stop.set()
        self.join(30)
        self.member.leave()
        self.channel.close()


def test_members_join_and_leave_under_load_lose_nothing_and_never_share(pier_server, log):
    partitions = 6
    topic = unique_topic()
    create(log, topic, partitions)
    group = unique_topic("group")
    processed, lock = {}, threading.Lock()
    stop_producing = threading.Event()
    produced = []

    def producer():
        channel, stub = connect(pier_server)
        i = 0
        while not stop_producing.is_set():
            reply = stub.Produce(pb.ProduceRequest(topic=topic, batches=[pb.ProduceBatch(
                partitioning=pb.PARTITIONING_BY_KEY,
                records=[pb.Record(key=b"k%d" % (i + j), value=b"%d" % (i + j)) for j in range(20)])]), timeout=20)
            produced.extend(r.record_count for r in reply.results)
            i += 20
            time.sleep(0.005)
        channel.close()

    producing = threading.Thread(target=producer, daemon=True)
    producing.start()
    rng = random.Random(7)
    live, everyone = [], []
    for step in range(12):
        if len(live) < 2 or (len(live) < 5 and rng.random() < 0.6):
            consumer = Consumer(pier_server, group, topic, f"c{step}", processed, lock)
            consumer.start()
            live.append(consumer)
            everyone.append(consumer)
        else:
            live.pop(rng.randrange(len(live))).close()
        time.sleep(rng.uniform(0.2, 0.6))
    stop_producing.set()
    producing.join(30)
    for consumer in everyone:
        assert consumer.failure is None, consumer.failure

    # Drain: one last member takes every partition and reads up to the end.
    for consumer in live[1:]:
        consumer.close()
    last = live[0]
    ends = {p: read_all(log, topic, p)[-1][0] + 1 if read_all(log, topic, p) else 0 for p in range(partitions)}
    wait_until(lambda: all((p, ends[p] - 1) in processed for p in range(partitions) if ends[p]),
               timeout=60, what="the last member to drain every partition")

    # Processing is recorded before its commit, and a commit refused by a rebalance is redone
    # in the next generation: wait for the commits to catch up before the last member leaves.
    def committed_offsets():
        return {o.partition: o.offset for o in log.FetchOffsets(pb.FetchOffsetsRequest(group_id=group),
                                                                 timeout=20).offsets}
    expected_commits = {p: ends[p] for p in range(partitions) if ends[p]}
    wait_until(lambda: committed_offsets() == expected_commits,
               timeout=60, what="the last member's commits to reach the log ends")
    last.close()
    assert last.failure is None, last.failure

    total = sum(produced)
    assert sum(ends.values()) == total
    generations = {g for handlers in processed.values() for _, g in handlers}
    members = {m for handlers in processed.values() for m, _ in handlers}
    assert total > 1000 and len(generations) > 5 and len(members) > 3, (total, generations, members)
    for p in range(partitions):
        for o in range(ends[p]):
            handlers = processed.get((p, o))
            assert handlers, f"record {p}/{o} was never processed"
            by_generation = {}
            for member, generation in handlers:
                by_generation.setdefault(generation, set()).add(member)
            shared = {g: m for g, m in by_generation.items() if len(m) > 1}
            assert not shared, f"record {p}/{o} processed by several members of one generation: {shared}"
    committed = {o.partition: o.offset for o in log.FetchOffsets(pb.FetchOffsetsRequest(group_id=group),
                                                                  timeout=20).offsets}
    assert committed == {p: ends[p] for p in range(partitions) if ends[p]}


# ---------------------------------------------------------------------------------------------
# Work queues


def receive(stub, topic, queue_name, n, visibility_ms=60000, wait_ms=2000):
    return stub.Receive(pb.ReceiveRequest(topic=topic, queue=queue_name, max_records=n,
                                          visibility_timeout_ms=visibility_ms, max_wait_ms=wait_ms), timeout=30).records


def refs(leased):
    return [pb.LeaseRef(partition=r.partition, offset=r.offset, lease_id=r.lease_id) for r in leased]


def test_work_queue_ack_redelivery_and_dead_letter(log):
    topic = unique_topic()
    create(log, topic, 2, queue_max_attempts=2)
    for p in range(2):
        produce(log, topic, [b"%d-%d" % (p, i) for i in range(5)], partition=p)
    name = "workers"

    first = receive(log, topic, name, 10)
    assert sorted(r.record.value for r in first) == sorted(b"%d-%d" % (p, i) for p in range(2) for i in range(5))
    assert all(r.attempt == 1 for r in first)
    assert len(receive(log, topic, name, 10, wait_ms=100)) == 0, "leased records are invisible to others"

    acked, nacked, forgotten = first[:5], first[5:8], first[8:]
    reply = log.Ack(pb.AckRequest(topic=topic, queue=name, leases=refs(acked)), timeout=20)
    assert reply.acked == 5 and not reply.stale
    again = log.Ack(pb.AckRequest(topic=topic, queue=name, leases=refs(acked[:1])), timeout=20)
    assert again.acked == 0 and len(again.stale) == 1
    assert log.Nack(pb.NackRequest(topic=topic, queue=name, leases=refs(nacked)), timeout=20).nacked == 3

    second = receive(log, topic, name, 10)
    assert sorted((r.partition, r.offset) for r in second) == sorted((r.partition, r.offset) for r in nacked)
    assert all(r.attempt == 2 for r in second)
    # A stale lease (from the first delivery) no longer acks the record.
    assert log.Ack(pb.AckRequest(topic=topic, queue=name, leases=refs(nacked[:1])), timeout=20).stale

    # Out of attempts: nacked records go to the dead-letter topic with where they came from.
    log.Nack(pb.NackRequest(topic=topic, queue=name, leases=refs(second)), timeout=20)
    dlq = topic + ".dlq"
    wait_until(lambda: topic + ".dlq" in {t.topic for t in log.ListTopics(pb.ListTopicsRequest(), timeout=20).topics}
               and len(read_all(log, dlq, 0)) == 3, what="the dead-letter topic")
    dead = [r for _, r in read_all(log, dlq, 0)]
    assert sorted(r.value for r in dead) == sorted(r.record.value for r in nacked)
    headers = {h.key: h.value for h in dead[0].headers}
    assert headers[b"pier.dlq.topic"] == topic.encode() and headers[b"pier.dlq.attempts"] == b"2"

    # The two never acked come back once their leases... are still held: nothing to receive.
    assert not receive(log, topic, name, 10, wait_ms=100)
    log.Ack(pb.AckRequest(topic=topic, queue=name, leases=refs(forgotten)), timeout=20)


def test_work_queue_redelivers_after_the_lease_expires(log):
    topic = unique_topic()
    create(log, topic, 1)
    produce(log, topic, [b"job"])
    first = receive(log, topic, "q", 1, visibility_ms=300)
    assert [r.attempt for r in first] == [1]
    second = receive(log, topic, "q", 1, wait_ms=10000)
    assert [(r.offset, r.attempt, r.record.value) for r in second] == [(0, 2, b"job")]
    assert log.Ack(pb.AckRequest(topic=topic, queue="q", leases=refs(first)), timeout=20).stale
    assert log.Ack(pb.AckRequest(topic=topic, queue="q", leases=refs(second)), timeout=20).acked == 1


def test_work_queue_bad_requests(log):
    topic = unique_topic()
    create(log, topic, 1)
    assert status_of(log.Receive, pb.ReceiveRequest(topic=topic, queue=""))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(log.Receive, pb.ReceiveRequest(topic=topic, queue="q", max_records=-1))[0] \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(log.Receive, pb.ReceiveRequest(topic=unique_topic("missing"), queue="q"))[0] \
        == grpc.StatusCode.NOT_FOUND
