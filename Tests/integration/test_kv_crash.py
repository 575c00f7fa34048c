"""Crash test: concurrent etcd-API writers against Pier, `kill -9` at random moments, restart on the same
data directory; every acknowledged write must be there (same value, same revision) and the
store's revision must never go back.
"""
import os
import random
import threading
import time

import grpc

from etcd_fixtures import EtcdClient, pier_etcd_factory, rpc_pb2  # noqa: F401

CYCLES = int(os.environ.get("PIER_CRASH_CYCLES", "20"))
WRITERS = 8
TIME_LIMIT = float(os.environ.get("PIER_CRASH_SECONDS", "300"))


class Writer(threading.Thread):
    """Puts fresh keys (and overwrites one counter key) until told to stop, keeping what was acknowledged."""

    def __init__(self, index, address, acked, lock, stop, seed):
        super().__init__(daemon=True)
        self.index = index
        self.address = address
        self.acked = acked
        self.lock = lock
        self.stop = stop
        self.rng = random.Random(seed)

    def run(self):
        client = EtcdClient(self.address)
        try:
            while not self.stop.is_set():
                with self.lock:
                    sequence = self.acked["next"][self.index]
                    self.acked["next"][self.index] += 1
                key = b"w%d/%08d" % (self.index, sequence)
                value = os.urandom(self.rng.randint(1, 64))
                try:
                    if sequence % 5 == 0:
                        # A txn that writes a fresh key and overwrites the writer's counter.
                        response = client.kv.Txn(rpc_pb2.TxnRequest(success=[
                            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value)),
                            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
                                key=b"counter/%d" % self.index, value=b"%d" % sequence)),
                        ]), timeout=5)
                        with self.lock:
                            self.acked["counter"][self.index] = max(self.acked["counter"].get(self.index, -1), sequence)
                    else:
                        response = client.kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=5)
                except grpc.RpcError:
                    # Unacknowledged (the server died): it may or may not have been applied.
                    with self.lock:
                        self.acked["maybe"].add(key)
                    if self.stop.wait(0.05):
                        return
                    continue
                with self.lock:
                    self.acked["keys"][key] = (value, response.header.revision)
                    self.acked["max_revision"] = max(self.acked["max_revision"], response.header.revision)
        finally:
            client.close()


def verify(address, acked):
    client = EtcdClient(address)
    try:
        current = client.kv.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", count_only=True),
                                  timeout=30).header.revision
        assert current >= acked["max_revision"], f"revision went back: {current} < {acked['max_revision']}"
        for index in range(WRITERS):
            prefix = b"w%d/" % index
            response = client.kv.Range(rpc_pb2.RangeRequest(key=prefix, range_end=prefix[:-1] + b"0"), timeout=30)
            stored = {kv.key: (kv.value, kv.mod_revision) for kv in response.kvs}
            for key, expected in acked["keys"].items():
                if key.startswith(prefix):
                    assert stored.get(key) == expected, f"acknowledged write {key!r} lost or changed"
            for key in stored:
                assert key in acked["keys"] or key in acked["maybe"], f"{key!r} was never written"
            if index in acked["counter"]:
                counter = client.kv.Range(rpc_pb2.RangeRequest(key=b"counter/%d" % index), timeout=30)
                assert counter.kvs and int(counter.kvs[0].value) >= acked["counter"][index]
        return current
    finally:
        client.close()


def test_kill_9_loses_no_acknowledged_write(pier_etcd_factory, tmp_path):
    rng = random.Random(int(os.environ.get("PIER_CRASH_SEED", "7")))
    data_dir = tmp_path / "data"
    acked = {"keys": {}, "maybe": set(), "counter": {}, "max_revision": 0, "next": [0] * WRITERS}
    lock = threading.Lock()
    started = None  # the clock starts once the first server is up (the first start may build it)
    last_revision = 0
    cycles = 0
    while cycles < CYCLES and (started is None or time.monotonic() - started < TIME_LIMIT):
        server = pier_etcd_factory(data_dir=data_dir)
        started = started or time.monotonic()
        t0 = time.monotonic()
        revision = verify(server.address, acked)
        print(f"cycle {cycles}: verified {len(acked['keys'])} keys in {time.monotonic() - t0:.2f}s", flush=True)
        assert revision >= last_revision, f"revision went back across a restart: {revision} < {last_revision}"
        last_revision = revision
        stop = threading.Event()
        writers = [Writer(i, server.address, acked, lock, stop, rng.random()) for i in range(WRITERS)]
        for writer in writers:
            writer.start()
        time.sleep(rng.uniform(0.2, 1.2))
        server.kill()  # SIGKILL: no chance to flush anything
        stop.set()
        for writer in writers:
            writer.join(10)
        cycles += 1
    server = pier_etcd_factory(data_dir=data_dir)
    final = verify(server.address, acked)
    assert final >= last_revision
    assert cycles >= min(CYCLES, 20), f"only {cycles} kill cycles ran within {TIME_LIMIT}s"
    assert len(acked["keys"]) > 0
