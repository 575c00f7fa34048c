"""Consumer against Pier: reading partitions, groups sharing partitions, commits, the asyncio consumer."""
import asyncio
import time

import pytest

import pier


def produce(client, topic, count, partitions=None, key_prefix=b"k"):
    with pier.Producer(client) as producer:
        futures = [producer.send(topic, f"v{i}".encode(), key=key_prefix + str(i).encode(),
                                 partition=None if partitions is None else i % partitions)
                   for i in range(count)]
        return [f.result(timeout=30) for f in futures]


def test_consumer_without_group_reads_every_partition(pier_client, prefix):
    pier_client.admin.create_topic(prefix, partitions=3)
    produce(pier_client, prefix, 30, partitions=3)
    with pier.Consumer(pier_client, prefix, consumer_timeout=3) as consumer:
        assert consumer.assignment == {(prefix, 0), (prefix, 1), (prefix, 2)}
        records = list(consumer)
    assert sorted(r.value for r in records) == sorted(f"v{i}".encode() for i in range(30))
    for p in range(3):
        offsets = [r.offset for r in records if r.partition == p]
        assert offsets == list(range(10))  # in order within a partition


def test_records_keep_keys_headers_and_tombstones(pier_client, prefix):
    pier_client.admin.create_topic(prefix)
    with pier.Producer(pier_client) as producer:
        producer.send(prefix, b"v", key=b"k", headers={"trace": b"abc"}, timestamp_ms=1_700_000_000_000)
        producer.send(prefix, None, key=b"k")
    with pier.Consumer(pier_client, prefix, consumer_timeout=3) as consumer:
        first, tombstone = list(consumer)
    assert (first.key, first.value, first.headers) == (b"k", b"v", ((b"trace", b"abc"),))
    assert first.timestamp_ms == 1_700_000_000_000
    assert tombstone.key == b"k" and tombstone.value is None and tombstone.offset == 1


def test_latest_skips_existing_records_and_follows_new_ones(pier_client, prefix):
    pier_client.admin.create_topic(prefix)
    produce(pier_client, prefix, 5)
    with pier.Consumer(pier_client, prefix, auto_offset_reset="latest") as consumer:
        # The subscription starts at the end as it is when the stream opens, which the client
        # cannot observe: keep appending until records arrive, then check none is old.
        records = []
        for attempt in range(10):
            produce(pier_client, prefix, 1, key_prefix=f"new{attempt}-".encode())
            records = consumer.poll(timeout=1)
            if records:
                break
    assert records and all(r.offset >= 5 and r.key.startswith(b"new") for r in records)


def test_group_commit_then_resume(pier_client, prefix):
    pier_client.admin.create_topic(prefix, partitions=2)
    produce(pier_client, prefix, 20, partitions=2)
    group = f"{prefix}-group"
    with pier.Consumer(pier_client, prefix, group_id=group, consumer_timeout=5) as consumer:
        assert consumer.assignment == {(prefix, 0), (prefix, 1)}
        seen = []
        for record in consumer:
            seen.append(record)
            if len(seen) == 12:
                break
        consumer.commit()
        positions = {p: consumer.position(prefix, p) for p in (0, 1)}
    assert sum(positions.values()) == 12
    assert pier_client.admin.committed_offsets(group) == {(prefix, p): o for p, o in positions.items()}
    with pier.Consumer(pier_client, prefix, group_id=group, consumer_timeout=3) as consumer:
        rest = list(consumer)
    assert len(rest) == 8
    assert {(r.partition, r.offset) for r in seen}.isdisjoint({(r.partition, r.offset) for r in rest})


def test_two_members_share_the_partitions(pier_client, prefix):
    pier_client.admin.create_topic(prefix, partitions=4)
    group = f"{prefix}-group"
    with pier.Consumer(pier_client, prefix, group_id=group) as first:
        assert len(first.assignment) == 4
        with pier.Consumer(pier_client, prefix, group_id=group) as second:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and len(first.assignment) != 2:
                first.poll(timeout=0.2)
            assert len(first.assignment) == 2 and len(second.assignment) == 2
            assert first.assignment | second.assignment == {(prefix, p) for p in range(4)}
            described = pier_client.admin.describe_group(group)
            assert described.state == "Stable" and len(described.members) == 2
        # The second member left: the first gets every partition back.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(first.assignment) != 4:
            first.poll(timeout=0.2)
        assert len(first.assignment) == 4


def test_async_for(pier_client, prefix):
    pier_client.admin.create_topic(prefix, partitions=2)
    produce(pier_client, prefix, 6, partitions=2)

    async def consume():
        out = []
        async with pier.AsyncConsumer(pier_client, prefix, group_id=f"{prefix}-g", consumer_timeout=3) as consumer:
            async for record in consumer:
                out.append(record.value)
            await consumer.commit()
        return out

    values = asyncio.run(asyncio.wait_for(consume(), 60))
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(6))
    assert sum(pier_client.admin.committed_offsets(f"{prefix}-g").values()) == 6


def test_commit_with_a_stale_generation_is_fenced(pier_client, prefix):
    pier_client.admin.create_topic(prefix, partitions=2)
    group = f"{prefix}-group"
    with pier.Consumer(pier_client, prefix, group_id=group) as first:
        stale = first.generation
        with pier.Consumer(pier_client, prefix, group_id=group) as second:
            assert second.generation > stale
            # `first` has not polled since the rebalance, so it still holds the old generation.
            with pytest.raises(pier.FailedPreconditionError):
                first.commit({(prefix, 0): 1})
            second.commit({(prefix, p): 0 for p in range(2)})


def test_auto_commit_on_close(pier_client, prefix):
    pier_client.admin.create_topic(prefix)
    produce(pier_client, prefix, 5)
    group = f"{prefix}-group"
    with pier.Consumer(pier_client, prefix, group_id=group, enable_auto_commit=True, consumer_timeout=3) as consumer:
        assert len(list(consumer)) == 5
    assert pier_client.admin.committed_offsets(group) == {(prefix, 0): 5}


def test_async_consumer_without_group_from_an_endpoint(pier_client, prefix):
    pier_client.admin.create_topic(prefix, partitions=2)
    produce(pier_client, prefix, 4, partitions=2)

    async def consume():
        async with pier.AsyncConsumer(pier_client.endpoint, prefix, consumer_timeout=3) as consumer:
            assert consumer.assignment == {(prefix, 0), (prefix, 1)}
            return [(r.partition, r.offset) async for r in consumer]

    assert sorted(asyncio.run(asyncio.wait_for(consume(), 60))) == [(0, 0), (0, 1), (1, 0), (1, 1)]
