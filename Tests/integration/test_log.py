"""The log as a client sees it: topics, produce and partitioning, idempotence, fetch, subscribe, offsets, retention."""
import itertools
import threading
import time

import grpc
import pytest

from log_fixtures import (connect, log, pb, produce, read_all, records, status_of, unique_topic,  # noqa: F401
                          wait_until)

# Kafka's own murmur2 test vectors (UtilsTest.testMurmur2): the Java client's hash of each key.
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def create(stub, topic, partitions=1, **configs):
    return stub.CreateTopic(pb.CreateTopicRequest(topic=topic, partitions=partitions,
                                                  configs={k.replace("_", "."): str(v) for k, v in configs.items()}),
                            timeout=30).topic


def offsets(stub, topic, partition=0):
    p = stub.DescribeTopic(pb.DescribeTopicRequest(topic=topic), timeout=20).topic.partitions[partition]
    return p.log_start_offset, p.log_end_offset


# ---------------------------------------------------------------------------------------------
# Topic administration


def test_create_describe_list_alter_delete(log):
    topic = unique_topic()
    created = create(log, topic, partitions=3, retention_ms=60000)
    assert created.topic == topic
    assert [p.partition for p in created.partitions] == [0, 1, 2]
    assert created.configs["retention.ms"] == "60000"
    assert created.configs["cleanup.policy"] == "delete"

    listed = {t.topic: t.partitions for t in log.ListTopics(pb.ListTopicsRequest(), timeout=20).topics}
    assert listed[topic] == 3

    altered = log.AlterTopicConfig(pb.AlterTopicConfigRequest(topic=topic, set={"segment.bytes": "4096"},
                                                              remove=["retention.ms"]), timeout=20).topic
    assert altered.configs["segment.bytes"] == "4096"
    assert altered.configs["retention.ms"] == "604800000"

    log.DeleteTopic(pb.DeleteTopicRequest(topic=topic), timeout=30)
    listed = {t.topic for t in log.ListTopics(pb.ListTopicsRequest(), timeout=20).topics}
    assert topic not in listed
    assert status_of(log.DescribeTopic, pb.DescribeTopicRequest(topic=topic))[0] == grpc.StatusCode.NOT_FOUND


def test_create_existing_topic_is_already_exists(log):
    topic = unique_topic()
    create(log, topic)
    code, details = status_of(log.CreateTopic, pb.CreateTopicRequest(topic=topic, partitions=1))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert topic in details


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "has space", "x" * 250, "é"])
def test_bad_topic_names_are_invalid_argument(log, name):
    code, _ = status_of(log.CreateTopic, pb.CreateTopicRequest(topic=name, partitions=1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("partitions,configs", [
    (0, {}), (-1, {}), (1, {"no.such.config": "1"}), (1, {"retention.ms": "soon"}),
    (1, {"cleanup.policy": "shred"}), (1, {"segment.bytes": "1"}),
])
def test_bad_partition_counts_and_configs_are_invalid_argument(log, partitions, configs):
    topic = unique_topic()
    code, details = status_of(log.CreateTopic, pb.CreateTopicRequest(topic=topic, partitions=partitions, configs=configs))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details
    assert topic not in {t.topic for t in log.ListTopics(pb.ListTopicsRequest(), timeout=20).topics}


def test_unknown_topic_and_partition_are_not_found(log):
    missing = unique_topic("missing")
    for call, request in [
        (log.Produce, pb.ProduceRequest(topic=missing, batches=[pb.ProduceBatch(records=[pb.Record(value=b"v")])])),
        (log.Fetch, pb.FetchRequest(topic=missing)),
        (log.ListOffsets, pb.ListOffsetsRequest(topic=missing)),
        (log.DeleteTopic, pb.DeleteTopicRequest(topic=missing)),
    ]:
        assert status_of(call, request)[0] == grpc.StatusCode.NOT_FOUND, call
    topic = unique_topic()
    create(log, topic, partitions=2)
    code, details = status_of(log.Produce, pb.ProduceRequest(topic=topic, batches=[
        pb.ProduceBatch(partition=2, records=[pb.Record(value=b"v")])]))
    assert code == grpc.StatusCode.NOT_FOUND and "partition 2" in details
    assert status_of(log.Fetch, pb.FetchRequest(topic=topic, partition=5))[0] == grpc.StatusCode.NOT_FOUND


def test_malformed_and_empty_requests_are_invalid_argument(pier_server, log):
    topic = unique_topic()
    create(log, topic)
    channel, _ = connect(pier_server)
    for method in ["Produce", "Fetch", "CreateTopic", "CommitOffsets"]:
        call = channel.unary_unary(f"/pier.log.v1.Log/{method}")
        assert status_of(call, b"\xff\xff\xff")[0] == grpc.StatusCode.INVALID_ARGUMENT, method
    channel.close()
    assert status_of(log.Produce, pb.ProduceRequest(topic=topic))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(log.Produce, pb.ProduceRequest(topic=topic, batches=[pb.ProduceBatch()]))[0] \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(log.Fetch, pb.FetchRequest(topic=topic, max_wait_ms=-1))[0] == grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------------------------------------
# Produce


def test_produce_explicit_partition_assigns_consecutive_offsets(log):
    topic = unique_topic()
    create(log, topic, partitions=2)
    first = produce(log, topic, [b"a", b"b", b"c"], partition=1).results[0]
    second = produce(log, topic, [b"d"], partition=1).results[0]
    assert (first.partition, first.base_offset, first.record_count) == (1, 0, 3)
    assert (second.base_offset, second.record_count) == (3, 1)
    got = read_all(log, topic, 1)
    assert [(o, r.value) for o, r in got] == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
    assert offsets(log, topic, 0) == (0, 0)


def test_records_keep_keys_headers_timestamps_and_tombstones(log):
    topic = unique_topic()
    create(log, topic)
    record = pb.Record(key=b"k", value=b"v", timestamp_ms=1234567, headers=[pb.RecordHeader(key=b"h", value=b"1")])
    log.Produce(pb.ProduceRequest(topic=topic, batches=[pb.ProduceBatch(records=[
        record, pb.Record(key=b"gone", tombstone=True), pb.Record(value=b"now")])]), timeout=20)
    got = [r for _, r in read_all(log, topic, 0)]
    assert (got[0].key, got[0].value, got[0].timestamp_ms) == (b"k", b"v", 1234567)
    assert [(h.key, h.value) for h in got[0].headers] == [(b"h", b"1")]
    assert got[1].key == b"gone" and got[1].tombstone and got[1].value == b""
    assert got[2].timestamp_ms > 1_600_000_000_000, "a record without a timestamp gets the append time"


def test_by_key_partitioning_matches_kafkas_murmur2(log):
    partitions = 7
    topic = unique_topic()
    create(log, topic, partitions=partitions)
    keys = list(KAFKA_MURMUR2)
    reply = log.Produce(pb.ProduceRequest(topic=topic, batches=[pb.ProduceBatch(
        partitioning=pb.PARTITIONING_BY_KEY, records=[pb.Record(key=k, value=k) for k in keys])]), timeout=20)
    expected = {k: (h & 0x7FFFFFFF) % partitions for k, h in KAFKA_MURMUR2.items()}
    assert all(r.error_code == 0 and r.batch_index == 0 for r in reply.results)
    assert sorted(r.partition for r in reply.results) == sorted(set(expected.values()))
    for p in range(partitions):
        stored = {r.key for _, r in read_all(log, topic, p)}
        assert stored == {k for k, want in expected.items() if want == p}, f"partition {p}"


def test_by_key_keyless_records_and_round_robin_spread_over_partitions(log):
    topic = unique_topic()
    create(log, topic, partitions=3)
    seen = []
    for i in range(6):
        reply = log.Produce(pb.ProduceRequest(topic=topic, batches=[pb.ProduceBatch(
            partitioning=pb.PARTITIONING_ROUND_ROBIN, records=[pb.Record(value=b"%d" % i)])]), timeout=20)
        seen.append(reply.results[0].partition)
    assert sorted(seen) == [0, 0, 1, 1, 2, 2]
    reply = log.Produce(pb.ProduceRequest(topic=topic, batches=[pb.ProduceBatch(
        partitioning=pb.PARTITIONING_BY_KEY, records=[pb.Record(value=b"x"), pb.Record(value=b"y")])]), timeout=20)
    assert len(reply.results) == 1, "keyless records of one batch stay together"


def test_idempotent_retry_is_acked_with_the_original_offset(log):
    topic = unique_topic()
    create(log, topic)
    producer = log.InitProducer(pb.InitProducerRequest(), timeout=20).producer_id
    assert producer > 0
    produce(log, topic, [b"other"])
    request = pb.ProduceRequest(topic=topic, producer_id=producer, request_id=7, batches=[
        pb.ProduceBatch(partition=0, base_sequence=0, records=[pb.Record(value=b"a"), pb.Record(value=b"b")])])
    first = log.Produce(request, timeout=20)
    retry = log.Produce(request, timeout=20)
    assert first.request_id == retry.request_id == 7
    assert not first.results[0].duplicate and retry.results[0].duplicate
    assert retry.results[0].base_offset == first.results[0].base_offset == 1
    nxt = log.Produce(pb.ProduceRequest(topic=topic, producer_id=producer, batches=[
        pb.ProduceBatch(partition=0, base_sequence=2, records=[pb.Record(value=b"c")])]), timeout=20)
    assert nxt.results[0].base_offset == 3
    assert [r.value for _, r in read_all(log, topic, 0)] == [b"other", b"a", b"b", b"c"]


def test_sequence_gap_is_rejected_and_nothing_stored(log):
    topic = unique_topic()
    create(log, topic)
    producer = log.InitProducer(pb.InitProducerRequest(), timeout=20).producer_id
    log.Produce(pb.ProduceRequest(topic=topic, producer_id=producer, batches=[
        pb.ProduceBatch(partition=0, base_sequence=0, records=[pb.Record(value=b"a")])]), timeout=20)
    code, details = status_of(log.Produce, pb.ProduceRequest(topic=topic, producer_id=producer, batches=[
        pb.ProduceBatch(partition=0, base_sequence=5, records=[pb.Record(value=b"gap")])]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "expected 1" in details
    assert offsets(log, topic) == (0, 1)


def test_idempotent_producer_must_name_the_partition(log):
    topic = unique_topic()
    create(log, topic, partitions=2)
    producer = log.InitProducer(pb.InitProducerRequest(), timeout=20).producer_id
    code, _ = status_of(log.Produce, pb.ProduceRequest(topic=topic, producer_id=producer, batches=[
        pb.ProduceBatch(partitioning=pb.PARTITIONING_BY_KEY, records=[pb.Record(key=b"k", value=b"v")])]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_batch_over_max_message_bytes_is_resource_exhausted(log):
    topic = unique_topic()
    create(log, topic, max_message_bytes=1024)
    code, details = status_of(log.Produce, pb.ProduceRequest(topic=topic, batches=[
        pb.ProduceBatch(records=[pb.Record(value=b"x" * 2000)])]))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max.message.bytes" in details
    assert offsets(log, topic) == (0, 0)
    produce(log, topic, [b"small"])


def test_one_failing_batch_does_not_fail_the_others(log):
    topic = unique_topic()
    create(log, topic, partitions=2, max_message_bytes=1024)
    reply = log.Produce(pb.ProduceRequest(topic=topic, batches=[
        pb.ProduceBatch(partition=0, records=[pb.Record(value=b"ok")]),
        pb.ProduceBatch(partition=1, records=[pb.Record(value=b"x" * 2000)])]), timeout=20)
    by_batch = {r.batch_index: r for r in reply.results}
    assert by_batch[0].error_code == 0 and by_batch[0].base_offset == 0
    assert by_batch[1].error_code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert by_batch[1].error_message


def test_produce_stream_acks_every_request_in_order(log):
    topic = unique_topic()
    create(log, topic, partitions=2)
    requests = [pb.ProduceRequest(topic=topic, request_id=i, batches=[
        pb.ProduceBatch(partition=i % 2, records=[pb.Record(value=b"%d" % i)] * 10)]) for i in range(500)]
    acks = list(log.ProduceStream(iter(requests), timeout=60))
    assert [a.request_id for a in acks] == list(range(500))
    assert all(a.results[0].error_code == 0 for a in acks)
    assert offsets(log, topic, 0)[1] == offsets(log, topic, 1)[1] == 2500


def test_produce_stream_acks_read_late_all_arrive_in_order(log):
    """A producer that pipelines more requests than the server keeps acks outstanding for
    (256), and reads nothing for a while, still gets every ack, in order, once it reads."""
    topic = unique_topic()
    create(log, topic)
    requests = (pb.ProduceRequest(topic=topic, request_id=i, batches=[pb.ProduceBatch(records=[pb.Record(value=b"v")])])
                for i in range(3000))
    call = log.ProduceStream(requests, timeout=120)
    time.sleep(2)
    assert [a.request_id for a in call] == list(range(3000))
    assert offsets(log, topic) == (0, 3000)


# ---------------------------------------------------------------------------------------------
# Fetch, Subscribe, ListOffsets


def test_fetch_out_of_range_names_the_valid_offsets(log):
    topic = unique_topic()
    create(log, topic)
    produce(log, topic, [b"a", b"b"])
    code, details = status_of(log.Fetch, pb.FetchRequest(topic=topic, offset=9))
    assert code == grpc.StatusCode.OUT_OF_RANGE
    assert "log start offset 0" in details and "log end offset 2" in details
    assert status_of(log.Fetch, pb.FetchRequest(topic=topic, offset=-1))[0] == grpc.StatusCode.OUT_OF_RANGE
    at_end = log.Fetch(pb.FetchRequest(topic=topic, offset=2), timeout=20)
    assert len(at_end.batches) == 0 and at_end.high_watermark == 2 and at_end.next_offset == 2


def test_fetch_from_the_middle_of_a_batch_and_with_max_bytes(log):
    topic = unique_topic()
    create(log, topic)
    for i in range(20):
        produce(log, topic, [b"%d-%d" % (i, j) for j in range(5)])
    reply = log.Fetch(pb.FetchRequest(topic=topic, offset=7, max_bytes=1), timeout=20)
    assert len(reply.batches) == 1, "at least one whole batch, no more when max_bytes is tiny"
    assert reply.batches[0].base_offset == 5 and reply.next_offset == 10
    assert [o for o, _ in records(reply.batches, 7)] == [7, 8, 9]


def test_fetch_long_poll_returns_when_records_arrive(log):
    topic = unique_topic()
    create(log, topic)
    result = {}

    def poll():
        result["reply"] = log.Fetch(pb.FetchRequest(topic=topic, offset=0, max_wait_ms=30000), timeout=60)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)
    produce(log, topic, [b"wake"])
    poller.join(60)
    assert [r.value for _, r in records(result["reply"].batches)] == [b"wake"]
    empty = log.Fetch(pb.FetchRequest(topic=topic, offset=1, max_wait_ms=200), timeout=20)
    assert len(empty.batches) == 0 and empty.next_offset == 1


def subscribe_values(stub, request, count, timeout=30):
    """The first `count` (offset, value) pairs a subscription delivers, then cancels it."""
    call = stub.Subscribe(request, timeout=timeout)
    got = []
    try:
        for reply in call:
            assert reply.partition == request.partition
            got += [(o, r.value) for o, r in records(reply.batches)]
            if len(got) >= count:
                break
    finally:
        call.cancel()
    return got


def test_subscribe_from_offset_earliest_latest_and_timestamp(log):
    topic = unique_topic()
    create(log, topic)
    for i in range(10):
        log.Produce(pb.ProduceRequest(topic=topic, batches=[pb.ProduceBatch(
            records=[pb.Record(value=b"%d" % i, timestamp_ms=1_000_000 + i * 1000)])]), timeout=20)

    got = subscribe_values(log, pb.SubscribeRequest(topic=topic, start=pb.START_POSITION_EARLIEST), 10)
    assert got == [(i, b"%d" % i) for i in range(10)]
    got = subscribe_values(log, pb.SubscribeRequest(topic=topic, start=pb.START_POSITION_OFFSET, offset=6), 4)
    assert got == [(i, b"%d" % i) for i in range(6, 10)]
    got = subscribe_values(log, pb.SubscribeRequest(topic=topic, start=pb.START_POSITION_TIMESTAMP,
                                                    timestamp_ms=1_000_000 + 3500), 6)
    assert got == [(i, b"%d" % i) for i in range(4, 10)]

    # Latest: only what is produced after subscribing.
    call = log.Subscribe(pb.SubscribeRequest(topic=topic, start=pb.START_POSITION_LATEST), timeout=30)
    time.sleep(0.3)
    produce(log, topic, [b"after"])
    first = next(call)
    call.cancel()
    assert [(o, r.value) for o, r in records(first.batches)] == [(10, b"after")]


def test_subscribe_follows_live_records(log):
    topic = unique_topic()
    create(log, topic)
    call = log.Subscribe(pb.SubscribeRequest(topic=topic, start=pb.START_POSITION_EARLIEST), timeout=60)
    got = []

    def consume():
        for reply in call:
            got.extend(r.value for _, r in records(reply.batches))
            if len(got) >= 100:
                return

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(20):
        produce(log, topic, [b"%d-%d" % (i, j) for j in range(5)])
    consumer.join(60)
    call.cancel()
    assert got == [b"%d-%d" % (i, j) for i in range(20) for j in range(5)]


def test_subscribe_errors(log):
    topic = unique_topic()
    create(log, topic)
    produce(log, topic, [b"a"])
    call = log.Subscribe(pb.SubscribeRequest(topic=topic, start=pb.START_POSITION_OFFSET, offset=5), timeout=20)
    with pytest.raises(grpc.RpcError) as error:
        next(call)
    assert error.value.code() == grpc.StatusCode.OUT_OF_RANGE
    call = log.Subscribe(pb.SubscribeRequest(topic=unique_topic("missing")), timeout=20)
    with pytest.raises(grpc.RpcError) as error:
        next(call)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_slow_subscribers_are_paced_not_buffered(pier_server, log):
    """Subscribers that stop reading hold the server back through flow control: it keeps about
    one reply per subscriber, far below the log they would otherwise buffer, and they still
    get every record in order."""
    topic = unique_topic()
    create(log, topic)
    value = b"v" * 1000
    batches, per_batch = 80, 100
    for _ in range(batches):
        produce(log, topic, [value] * per_batch)  # 8 MB in all
    before = pier_server.rss_bytes()
    channel, stub = connect(pier_server)
    request = pb.SubscribeRequest(topic=topic, start=pb.START_POSITION_EARLIEST, max_bytes=64 * 1024)
    calls = [stub.Subscribe(request, timeout=120) for _ in range(4)]
    firsts = [next(call) for call in calls]  # each subscription is running, then nobody reads for a while
    time.sleep(2)
    grown = pier_server.rss_bytes() - before
    assert grown < 12 * 1024 * 1024, f"server grew by {grown} bytes for 4 stalled subscribers of an 8 MB log"
    next_offset = 0
    for reply in itertools.chain([firsts[0]], calls[0]):
        for batch in reply.batches:  # whole batches, each starting where the last one ended
            assert batch.base_offset == next_offset
            next_offset += batch.record_count
        if next_offset >= batches * per_batch:
            break
    assert next_offset == batches * per_batch
    for call in calls:
        call.cancel()
    channel.close()


def test_list_offsets(log):
    topic = unique_topic()
    create(log, topic, partitions=2)
    for i in range(5):
        log.Produce(pb.ProduceRequest(topic=topic, batches=[pb.ProduceBatch(
            partition=1, records=[pb.Record(value=b"%d" % i, timestamp_ms=5000 + i * 100)])]), timeout=20)
    latest = log.ListOffsets(pb.ListOffsetsRequest(topic=topic), timeout=20).offsets
    assert [(o.partition, o.offset) for o in latest] == [(0, 0), (1, 5)]
    earliest = log.ListOffsets(pb.ListOffsetsRequest(topic=topic, partitions=[1], spec=pb.OFFSET_SPEC_EARLIEST),
                               timeout=20).offsets
    assert [(o.partition, o.offset) for o in earliest] == [(1, 0)]
    by_time = log.ListOffsets(pb.ListOffsetsRequest(topic=topic, partitions=[1], spec=pb.OFFSET_SPEC_TIMESTAMP,
                                                    timestamp_ms=5250), timeout=20).offsets[0]
    assert (by_time.offset, by_time.timestamp_ms) == (3, 5300)
    past = log.ListOffsets(pb.ListOffsetsRequest(topic=topic, partitions=[1], spec=pb.OFFSET_SPEC_TIMESTAMP,
                                                 timestamp_ms=99999), timeout=20).offsets[0]
    assert (past.offset, past.timestamp_ms) == (5, -1)
    assert status_of(log.ListOffsets, pb.ListOffsetsRequest(topic=topic, partitions=[7]))[0] \
        == grpc.StatusCode.NOT_FOUND


def test_retention_removes_old_segments(log):
    """Size-based retention: once the partition is over retention.bytes, whole old segments go,
    the log start offset advances, and reads below it are OUT_OF_RANGE (the engine's retention
    pass runs every 30 s)."""
    topic = unique_topic()
    create(log, topic, segment_bytes=4096, retention_bytes=8192)
    for i in range(40):
        produce(log, topic, [b"%04d" % i + b"x" * 1000])
    start = wait_until(lambda: offsets(log, topic)[0] or None, timeout=75, interval=0.5, what="retention")
    assert 0 < start < 40
    assert offsets(log, topic)[1] == 40
    code, details = status_of(log.Fetch, pb.FetchRequest(topic=topic, offset=0))
    assert code == grpc.StatusCode.OUT_OF_RANGE and f"log start offset {start}" in details
    kept = read_all(log, topic, 0)
    assert [o for o, _ in kept] == list(range(start, 40))
    assert kept[-1][1].value.startswith(b"0039")
