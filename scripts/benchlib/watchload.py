# Watch fan-out: W watchers on one key, four writers; counts delivered events and put-to-notify latency.
import struct
import threading
import time

import grpc

from pier._proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc


def fanout(address, watchers, puts, value_bytes=128, channels=4, timeout=120):
    """Returns dict: events_per_s (delivered to all watchers), latencies_s (sorted), missing (events not seen)."""
    key = b"bench-fanout/%d" % watchers
    pool = [grpc.insecure_channel(address) for _ in range(min(channels, watchers))]
    stop = threading.Event()
    created = threading.Semaphore(0)
    lock = threading.Lock()
    latencies = []
    counts = [0] * watchers
    done = threading.Event()
    remaining = [watchers * puts]

    def watch(index):
        stub = rpc_pb2_grpc.WatchStub(pool[index % len(pool)])

        def requests():
            yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key))
            stop.wait()

        call = stub.Watch(requests(), timeout=timeout)
        mine = []
        try:
            for reply in call:
                if reply.created:
                    created.release()
                now = time.perf_counter()
                for event in reply.events:
                    mine.append(now - struct.unpack_from("<d", event.kv.value)[0])
                if mine and len(mine) >= puts:
                    break
        except grpc.RpcError:
            if not stop.is_set():
                raise
        finally:
            call.cancel()
            with lock:
                counts[index] = len(mine)
                latencies.extend(mine)
                remaining[0] -= len(mine)
                if remaining[0] <= 0 or all(c >= puts for c in counts):
                    done.set()

    threads = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(watchers)]
    for thread in threads:
        thread.start()
    for _ in range(watchers):
        if not created.acquire(timeout=30):
            raise RuntimeError(f"{address}: watchers were not created in time")

    writer = grpc.insecure_channel(address)
    kv = rpc_pb2_grpc.KVStub(writer)
    padding = b"v" * max(0, value_bytes - 8)
    start = time.perf_counter()
    # A few writers in parallel, so the server can batch commits as it would for many clients.
    per_writer = [puts // 4 + (1 if i < puts % 4 else 0) for i in range(4)]

    def write(n):
        for _ in range(n):
            kv.Put(rpc_pb2.PutRequest(key=key, value=struct.pack("<d", time.perf_counter()) + padding), timeout=30)

    writers = [threading.Thread(target=write, args=(n,), daemon=True) for n in per_writer]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.wait(timeout)
    elapsed = time.perf_counter() - start
    stop.set()
    for thread in threads:
        thread.join(10)
    writer.close()
    for channel in pool:
        channel.close()
    delivered = sum(counts)
    return {"events_per_s": delivered / elapsed, "latencies_s": sorted(latencies),
            "missing": watchers * puts - delivered}
