"""kill -9 under produce load, over and over: every acknowledged record survives exactly once, in order."""
import random
import threading
import time

import grpc

from log_fixtures import connect, pb, read_all

CYCLES = 20
PARTITIONS = 3
TOPIC = "crash"


class Acks:
    """What the server acknowledged: value -> (partition, offset), and per-stream ack order."""

    def __init__(self):
        self.lock = threading.Lock()
        self.offsets = {}
        self.streams = {}
        self.sent = set()

    def attempt(self, values):
        with self.lock:
            self.sent.update(values)

    def ack(self, stream, partition, base_offset, values):
        with self.lock:
            for i, value in enumerate(values):
                assert value not in self.offsets, f"{value} acknowledged twice"
                self.offsets[value] = (partition, base_offset + i)
                self.streams.setdefault(stream, []).append((partition, base_offset + i))


def unary_producer(stub, cycle, partition, acks, rng):
    """Produce calls one after the other until the server dies."""
    seq = 0
    while True:
        values = [b"c%d-u%d-%d" % (cycle, partition, seq + i) for i in range(rng.randint(1, 50))]
        seq += len(values)
        acks.attempt(values)
        try:
            reply = stub.Produce(pb.ProduceRequest(topic=TOPIC, batches=[
                pb.ProduceBatch(partition=partition, records=[pb.Record(value=v) for v in values])]), timeout=10)
        except grpc.RpcError:
            return
        result = reply.results[0]
        assert result.error_code == 0 and result.partition == partition, result
        acks.ack(("unary", cycle, partition), partition, result.base_offset, values)


def stream_producer(stub, cycle, partition, acks, rng):
    """A pipelined ProduceStream: up to 64 requests in flight, acks matched by request_id."""
    sent = {}
    window = threading.Semaphore(64)
    done = threading.Event()

    def requests():
        request_id = 0
        while not done.is_set():
            if not window.acquire(timeout=0.2):
                continue
            values = [b"c%d-s%d-%d-%d" % (cycle, partition, request_id, i) for i in range(rng.randint(1, 50))]
            acks.attempt(values)
            sent[request_id] = values
            yield pb.ProduceRequest(topic=TOPIC, request_id=request_id, batches=[
                pb.ProduceBatch(partition=partition, records=[pb.Record(value=v) for v in values])])
            request_id += 1

    expected = 0
    try:
        for reply in stub.ProduceStream(requests(), timeout=60):
            assert reply.request_id == expected, "acks arrive in request order"
            expected += 1
            result = reply.results[0]
            assert result.error_code == 0, result
            acks.ack(("stream", cycle, partition), partition, result.base_offset, sent.pop(reply.request_id))
            window.release()
    except grpc.RpcError:
        pass
    finally:
        done.set()


def test_acknowledged_records_survive_kill_9_exactly_once_and_in_order(pier_factory, tmp_path):
    data_dir = tmp_path / "data"
    rng = random.Random(2026)
    acks = Acks()
    started = time.monotonic()
    server = pier_factory(data_dir=data_dir)
    channel, stub = connect(server)
    stub.CreateTopic(pb.CreateTopicRequest(topic=TOPIC, partitions=PARTITIONS), timeout=30)
    channel.close()
    for cycle in range(CYCLES):
        if cycle:
            server = pier_factory(data_dir=data_dir)
        channel, stub = connect(server)
        # After each restart, everything acknowledged so far is below the high watermark.
        described = stub.DescribeTopic(pb.DescribeTopicRequest(topic=TOPIC), timeout=30).topic
        with acks.lock:
            for p in range(PARTITIONS):
                acked_end = max((o + 1 for part, o in acks.offsets.values() if part == p), default=0)
                assert described.partitions[p].log_end_offset >= acked_end, (cycle, p)
        producers = [threading.Thread(target=unary_producer, args=(stub, cycle, p, acks, random.Random(rng.random())))
                     for p in range(PARTITIONS - 1)]
        producers.append(threading.Thread(target=stream_producer,
                                          args=(stub, cycle, PARTITIONS - 1, acks, random.Random(rng.random()))))
        for t in producers:
            t.start()
        time.sleep(rng.uniform(0.2, 1.2))
        server.kill()  # SIGKILL: no shutdown, no flush
        for t in producers:
            t.join(60)
            assert not t.is_alive(), "a producer hung after the server was killed"
        channel.close()

    server = pier_factory(data_dir=data_dir)
    channel, stub = connect(server)
    stored = {p: read_all(stub, TOPIC, p) for p in range(PARTITIONS)}
    channel.close()

    where = {}
    for p, recs in stored.items():
        assert [o for o, _ in recs] == list(range(len(recs))), f"partition {p} has gaps or repeats"
        for o, record in recs:
            assert record.value in acks.sent, f"{record.value} was never sent"
            assert record.value not in where, f"{record.value} stored twice: {where[record.value]} and {(p, o)}"
            where[record.value] = (p, o)
    assert len(acks.offsets) > 1000, "too little was acknowledged for the test to mean anything"
    for value, at in acks.offsets.items():
        assert where.get(value) == at, f"acknowledged {value} at {at}, stored at {where.get(value)}"
    for stream, positions in acks.streams.items():
        assert positions == sorted(positions), f"{stream} acknowledged out of order"
    assert time.monotonic() - started < 600
