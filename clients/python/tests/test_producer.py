"""Producer against Pier: futures resolve on the durable ack with partition and offset, batching, keys, idempotence."""
import concurrent.futures

import grpc
import pytest

import pier
from pier.producer import murmur2, partition_for_key


def test_murmur2_matches_kafka():
    # Values from Kafka's UtilsTest (signed 32-bit there).
    def signed(h):
        return h - (1 << 32) if h >= 1 << 31 else h
    assert signed(murmur2(b"21")) == -973932308
    assert signed(murmur2(b"foobar")) == -790332482
    assert signed(murmur2(b"a-little-bit-long-string")) == -985981536
    assert signed(murmur2(b"a-little-bit-longer-string")) == -1486304829
    assert signed(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8")) == -58897971
    assert signed(murmur2(b"abc")) == 479470107
    assert partition_for_key(b"21", 4) == 0


def test_send_resolves_with_partition_and_consecutive_offsets(pier_client, prefix):
    pier_client.admin.create_topic(prefix, partitions=1)
    with pier.Producer(pier_client, linger_ms=20) as producer:
        futures = [producer.send(prefix, f"value-{i}".encode()) for i in range(50)]
        done = [f.result(timeout=30) for f in futures]
    assert [m.offset for m in done] == list(range(50))
    assert {(m.topic, m.partition) for m in done} == {(prefix, 0)}
    assert pier_client.admin.describe_topic(prefix).partitions[0].log_end_offset == 50


def test_small_batches_and_flush(pier_client, prefix):
    pier_client.admin.create_topic(prefix, partitions=2)
    producer = pier.Producer(pier_client, batch_size=64, linger_ms=10_000)
    try:
        futures = [producer.send(prefix, b"x" * 40, partition=i % 2) for i in range(20)]
        # batch_size seals batches long before the linger, so acks arrive without a flush.
        futures[0].result(timeout=30)
        producer.flush(timeout=30)
        assert all(f.done() for f in futures)
        offsets = {0: [], 1: []}
        for f in futures:
            offsets[f.result().partition].append(f.result().offset)
        assert offsets == {0: list(range(10)), 1: list(range(10))}
    finally:
        producer.close()


def test_keyed_records_go_where_kafka_would_put_them(pier_client, prefix):
    pier_client.admin.create_topic(prefix, partitions=4)
    with pier.Producer(pier_client) as producer:
        sent = {key: producer.send(prefix, b"v", key=key) for key in [b"alpha", b"beta", b"gamma", b"delta", b"21"]}
        for key, future in sent.items():
            assert future.result(timeout=30).partition == partition_for_key(key, 4)


def test_producers_take_distinct_ids(pier_client, prefix):
    pier_client.admin.create_topic(prefix)
    with pier.Producer(pier_client) as a, pier.Producer(pier_client) as b:
        a.send(prefix, b"a").result(timeout=30)
        b.send(prefix, b"b").result(timeout=30)
        assert a.producer_id > 0 and b.producer_id > 0 and a.producer_id != b.producer_id


def test_non_idempotent_producer(pier_client, prefix):
    pier_client.admin.create_topic(prefix)
    with pier.Producer(pier_client, idempotent=False) as producer:
        assert producer.send(prefix, b"v").result(timeout=30).offset == 0
        assert producer.producer_id == 0


def test_errors_surface_on_send_or_future(pier_client, prefix):
    with pier.Producer(pier_client) as producer:
        with pytest.raises(pier.NotFoundError):
            producer.send(f"{prefix}-missing", b"v")
        pier_client.admin.create_topic(prefix, partitions=1)
        with pytest.raises(pier.InvalidArgumentError):
            producer.send(prefix, b"v", partition=5)
        too_big = producer.send(prefix, b"x" * (2 * 1024 * 1024))
        with pytest.raises(pier.PierError):
            too_big.result(timeout=30)
        # A refused batch does not poison the partition for the records after it.
        assert producer.send(prefix, b"small").result(timeout=30).offset == 0


def test_close_waits_for_acks(pier_client, prefix):
    pier_client.admin.create_topic(prefix)
    producer = pier.Producer(pier_client, linger_ms=50)
    futures = [producer.send(prefix, b"v") for _ in range(10)]
    producer.close(timeout=30)
    assert all(isinstance(f.result(timeout=0), pier.RecordMetadata) for f in futures)
    with pytest.raises(pier.PierError):
        producer.send(prefix, b"late")
    concurrent.futures.wait(futures, timeout=0)


class _LoseFirstProduceReply:
    """Wraps the Log stub so the first Produce reaches the server but its reply is 'lost'."""

    class LostReply(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "connection reset before the reply"

    def __init__(self, stub):
        self._stub = stub
        self.lost = 0

    def __getattr__(self, name):
        return getattr(self._stub, name)

    def Produce(self, request, **kwargs):
        reply = self._stub.Produce(request, **kwargs)
        if self.lost == 0:
            self.lost += 1
            raise self.LostReply()
        return reply


def test_a_resend_after_a_lost_reply_is_stored_once(pier_server, prefix):
    with pier.Client(pier_server.address) as client:
        client.admin.create_topic(prefix)
        client.log_stub = _LoseFirstProduceReply(client.log_stub)
        with pier.Producer(client, retry_backoff_ms=10) as producer:
            meta = producer.send(prefix, b"once").result(timeout=30)
            assert client.log_stub.lost == 1
            assert (meta.offset, meta.duplicate) == (0, True)
            assert producer.send(prefix, b"next").result(timeout=30).offset == 1
        assert client.admin.describe_topic(prefix).partitions[0].log_end_offset == 2
