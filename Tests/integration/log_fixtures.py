"""Helpers for the log's integration tests: a Log stub on a running `pier serve`, record decoding."""
import itertools
import os
import time

import grpc
import pytest

from pier._proto.pier.log.v1 import log_pb2 as pb
from pier._proto.pier.log.v1 import log_pb2_grpc as pbg

MIB = 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 16 * MIB),
    ("grpc.max_receive_message_length", 16 * MIB),
]
_names = itertools.count()


def unique_topic(prefix="t"):
    """A topic name no other test in this run uses (tests share one server)."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def connect(server):
    """A channel (ready) and a Log stub on `server`."""
    channel = grpc.insecure_channel(server.address, options=CHANNEL_OPTIONS)
    grpc.channel_ready_future(channel).result(timeout=20)
    return channel, pbg.LogStub(channel)


@pytest.fixture
def log(pier_server):
    channel, stub = connect(pier_server)
    yield stub
    channel.close()


def status_of(call, *args, **kwargs):
    """The status code (and details) a call fails with; AssertionError if it succeeds."""
    try:
        call(*args, timeout=kwargs.pop("timeout", 20), **kwargs)
    except grpc.RpcError as error:
        return error.code(), error.details()
    raise AssertionError(f"{call} succeeded")


def records(batches, from_offset=0):
    """(offset, Record) for every record of stored batches at or after `from_offset`."""
    out = []
    for batch in batches:
        for record in batch.records:
            offset = batch.base_offset + record.offset_delta
            if offset >= from_offset:
                out.append((offset, record))
    return out


def produce(stub, topic, values, partition=0, keys=None, **batch_fields):
    """Produces one explicit batch; returns the ProduceResponse."""
    recs = [pb.Record(key=(keys[i] if keys else b""), value=v) for i, v in enumerate(values)]
    return stub.Produce(pb.ProduceRequest(topic=topic, batches=[
        pb.ProduceBatch(partition=partition, records=recs, **batch_fields)]), timeout=20)


def read_all(stub, topic, partition, start=None, end=None, max_bytes=1 * MIB):
    """Every record of a partition from `start` (log start) to `end` (high watermark) by Fetch."""
    if start is None or end is None:
        described = stub.DescribeTopic(pb.DescribeTopicRequest(topic=topic), timeout=20).topic.partitions[partition]
        start = described.log_start_offset if start is None else start
        end = described.log_end_offset if end is None else end
    out = []
    offset = start
    while offset < end:
        reply = stub.Fetch(pb.FetchRequest(topic=topic, partition=partition, offset=offset, max_bytes=max_bytes),
                           timeout=30)
        got = records(reply.batches, offset)
        assert got or reply.next_offset > offset, f"no progress at {offset} (end {end})"
        out += [(o, r) for o, r in got if o < end]
        offset = reply.next_offset
    return out


def wait_until(predicate, timeout=30.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
