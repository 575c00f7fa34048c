"""Differential test: the same seeded stream of etcd v3 requests sent to Pier and to a real etcd 3.4,
every response (or error) compared field by field.

Normalized before comparing, and why:
- header.cluster_id, header.member_id: each server derives its own ids.
- header.raft_term: etcd's single member reports 2 (its first election moves the term from 1
  to 2); Pier has no elections and reports 1.
- LeaseTimeToLive.TTL: the seconds left depend on when each server was asked; compared to
  within 2 seconds. Its keys are compared sorted (etcd lists them in Go map order).
- Range sorted on a field other than the key: Go's sort.Sort is not stable, so etcd's order
  among equal sort values is arbitrary; compared as the sequence of sort values plus the set
  of keys (and, with a limit, only the sort values, since which tied keys make the cut is
  arbitrary too).
- Watch responses: how events are split across responses (and those responses' header
  revisions) is the server's choice; compared as the ordered list of events per watch id,
  plus the created and canceled responses. After creating a watcher on past revisions the
  test pauses so that etcd's 100 ms catch-up loop has run (otherwise whether a compaction
  cancels it is a race in etcd itself).

Set PIER_DIFF_SEED to replay a seed, PIER_DIFF_OPS to change the length, and
PIER_DIFF_AGAINST=etcd to run the harness etcd-against-etcd (checks the test itself).
"""
import os
import random
import time

import grpc
import pytest

from etcd_fixtures import (EtcdClient, WatchStream, needs_etcd, rpc_pb2,  # noqa: F401
                           etcd_factory, pier_etcd_factory)

SEED = int(os.environ.get("PIER_DIFF_SEED", "20261125"))
OPS = int(os.environ.get("PIER_DIFF_OPS", "3000"))

pytestmark = needs_etcd


def _strip_header(header):
    header.cluster_id = 0
    header.member_id = 0
    header.raft_term = 0


def normalize(response):
    """A copy of a response with the per-server fields cleared (recursively through txns)."""
    copy = type(response)()
    copy.CopyFrom(response)
    if copy.DESCRIPTOR.fields_by_name.get("header") is not None and copy.HasField("header"):
        _strip_header(copy.header)
    return copy


def sort_value(kv, target):
    return {rpc_pb2.RangeRequest.KEY: kv.key, rpc_pb2.RangeRequest.VERSION: kv.version,
            rpc_pb2.RangeRequest.CREATE: kv.create_revision, rpc_pb2.RangeRequest.MOD: kv.mod_revision,
            rpc_pb2.RangeRequest.VALUE: kv.value}[target]


def canonical_range(request, response):
    """Range responses with ties in a non-key sort reduced to what etcd defines."""
    if request.sort_target == rpc_pb2.RangeRequest.KEY:
        return response
    values = [sort_value(kv, request.sort_target) for kv in response.kvs]
    copy = type(response)()
    copy.CopyFrom(response)
    del copy.kvs[:]
    if request.limit == 0:
        kvs = sorted(response.kvs, key=lambda kv: (sort_value(kv, request.sort_target), kv.key))
        copy.kvs.extend(kvs)
    return (copy, values)


def canonical_txn(request, response):
    """A txn response with canonical_range applied to the ranges inside it (at any depth)."""
    ops = request.success if response.succeeded else request.failure
    parts = [response.header.SerializeToString(deterministic=True), response.succeeded, len(response.responses)]
    for op, resp in zip(ops, response.responses):
        which = op.WhichOneof("request")
        if which == "request_range":
            parts.append(canonical_range(op.request_range, resp.response_range))
        elif which == "request_txn":
            parts.append(canonical_txn(op.request_txn, resp.response_txn))
        else:
            parts.append(resp)
    return tuple(parts)


class CallError:
    """A failed call, compared by status code and message."""

    def __init__(self, code, details):
        self.code, self.details = code, details

    def __eq__(self, other):
        return isinstance(other, CallError) and (self.code, self.details) == (other.code, other.details)

    def __repr__(self):
        return f"CallError({self.code}, {self.details!r})"


def call(stub_method, request):
    """The normalized response, or the error as a CallError."""
    try:
        return normalize(stub_method(request, timeout=20))
    except grpc.RpcError as error:
        return CallError(error.code(), error.details())


def failed(answer):
    return isinstance(answer, CallError)


class Keyspace:
    """A small keyspace so that ranges, compares and deletes often hit existing keys."""

    def __init__(self, rng):
        self.rng = rng
        self.keys = [f"{p}/{i}".encode() for p in ("a", "b", "cc") for i in range(12)] + [b"d", b"e\xff", b"f"]

    def key(self):
        return self.rng.choice(self.keys)

    def value(self):
        return self.rng.choice([b"", b"v", b"value-" + str(self.rng.randint(0, 50)).encode(),
                                bytes(self.rng.randint(0, 255) for _ in range(self.rng.randint(1, 40)))])

    def range(self):
        """(key, range_end): a single key, a prefix, from-key, an interval, or everything."""
        kind = self.rng.random()
        if kind < 0.3:
            return self.key(), b""
        if kind < 0.6:
            prefix = self.rng.choice([b"a/", b"b/", b"cc/", b"a/1", b"e"])
            return prefix, prefix[:-1] + bytes([prefix[-1] + 1])
        if kind < 0.75:
            return self.key(), b"\0"
        if kind < 0.9:
            a, b = sorted([self.key(), self.key()])
            return a, b
        return b"\0", b"\0"


class Generator:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.keys = Keyspace(self.rng)
        self.revision = 1
        self.compacted = 0
        self.leases = []
        self.next_lease = 1000

    def range_request(self, in_txn=False):
        rng = self.rng
        key, end = self.keys.range()
        r = rpc_pb2.RangeRequest(key=key, range_end=end)
        if rng.random() < 0.3:
            r.limit = rng.randint(1, 6)
        if not in_txn and rng.random() < 0.25:
            # Past revisions, sometimes compacted or in the future.
            r.revision = rng.randint(max(1, self.compacted - 3), self.revision + 2)
        if rng.random() < 0.3:
            r.sort_order = rng.choice([0, 1, 2])
            r.sort_target = rng.choice([0, 1, 2, 3, 4])
        r.serializable = rng.random() < 0.3
        r.keys_only = rng.random() < 0.15
        r.count_only = rng.random() < 0.1
        if rng.random() < 0.1:
            r.min_mod_revision = rng.randint(0, self.revision)
        if rng.random() < 0.1:
            r.max_mod_revision = rng.randint(0, self.revision)
        if rng.random() < 0.1:
            r.min_create_revision = rng.randint(0, self.revision)
        if rng.random() < 0.1:
            r.max_create_revision = rng.randint(0, self.revision)
        return r

    def put_request(self):
        rng = self.rng
        r = rpc_pb2.PutRequest(key=self.keys.key(), value=self.keys.value())
        r.prev_kv = rng.random() < 0.4
        if self.leases and rng.random() < 0.25:
            r.lease = rng.choice(self.leases)
        elif rng.random() < 0.02:
            r.lease = 999_999  # no such lease
        if rng.random() < 0.05:
            r.ignore_value = True
            if rng.random() < 0.7:
                r.value = b""
        if rng.random() < 0.05:
            r.ignore_lease = True
            if rng.random() < 0.7:
                r.lease = 0
        return r

    def delete_request(self):
        key, end = self.keys.range()
        if end == b"\0" and key == b"\0" and self.rng.random() < 0.8:
            end = b""  # deleting everything is rare
        return rpc_pb2.DeleteRangeRequest(key=key, range_end=end, prev_kv=self.rng.random() < 0.5)

    def compare(self):
        rng = self.rng
        c = rpc_pb2.Compare(key=self.keys.key(), result=rng.choice([0, 1, 2, 3]))
        target = rng.choice([0, 1, 2, 3, 4])
        c.target = target
        if target == 0:
            c.version = rng.randint(0, 4)
        elif target == 1:
            c.create_revision = rng.randint(0, self.revision)
        elif target == 2:
            c.mod_revision = rng.randint(0, self.revision)
        elif target == 3:
            c.value = self.keys.value()
        else:
            c.lease = rng.choice(self.leases + [0]) if rng.random() < 0.8 else 0
        if rng.random() < 0.1:
            prefix = rng.choice([b"a/", b"b/"])
            c.key = prefix
            c.range_end = prefix[:-1] + bytes([prefix[-1] + 1])
        return c

    def txn_request(self, depth=0):
        rng = self.rng
        t = rpc_pb2.TxnRequest()
        for _ in range(rng.randint(0, 3)):
            t.compare.append(self.compare())
        for branch in (t.success, t.failure):
            written = set()
            for _ in range(rng.randint(0, 4)):
                kind = rng.random()
                if kind < 0.35:
                    branch.append(rpc_pb2.RequestOp(request_range=self.range_request(in_txn=True)))
                elif kind < 0.7:
                    put = self.put_request()
                    put.ignore_value = put.ignore_lease = False
                    if put.key in written and rng.random() < 0.9:
                        continue  # duplicate puts are an error; keep them rare
                    written.add(put.key)
                    branch.append(rpc_pb2.RequestOp(request_put=put))
                elif kind < 0.9 or depth > 0:
                    key = self.keys.key()
                    if key in written:
                        continue
                    written.add(key)
                    branch.append(rpc_pb2.RequestOp(
                        request_delete_range=rpc_pb2.DeleteRangeRequest(key=key, prev_kv=rng.random() < 0.5)))
                else:
                    branch.append(rpc_pb2.RequestOp(request_txn=self.txn_request(depth + 1)))
        return t


def run_op(gen, servers, op_index, log):
    """Generates one request, sends it to both servers, returns the two answers."""
    rng = gen.rng
    kind = rng.random()
    a, b = servers
    if kind < 0.30:
        request = gen.put_request()
        answers = [call(s.kv.Put, request) for s in servers]
    elif kind < 0.55:
        request = gen.range_request()
        answers = [call(s.kv.Range, request) for s in servers]
        answers = [x if failed(x) else canonical_range(request, x) for x in answers]
    elif kind < 0.65:
        request = gen.delete_request()
        answers = [call(s.kv.DeleteRange, request) for s in servers]
    elif kind < 0.85:
        request = gen.txn_request()
        answers = [call(s.kv.Txn, request) for s in servers]
        answers = [x if failed(x) else canonical_txn(request, x) for x in answers]
    elif kind < 0.89:
        gen.next_lease += rng.randint(1, 5)
        request = rpc_pb2.LeaseGrantRequest(ID=gen.next_lease, TTL=rng.randint(300, 900))
        if rng.random() < 0.05 and gen.leases:
            request.ID = rng.choice(gen.leases)  # already exists
        answers = [call(s.lease.LeaseGrant, request) for s in servers]
        if not failed(answers[0]):
            gen.leases.append(request.ID)
    elif kind < 0.91:
        lease_id = rng.choice(gen.leases) if gen.leases and rng.random() < 0.85 else 424242
        request = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
        answers = [call(s.lease.LeaseRevoke, request) for s in servers]
        if lease_id in gen.leases:
            gen.leases.remove(lease_id)
    elif kind < 0.93:
        lease_id = rng.choice(gen.leases) if gen.leases and rng.random() < 0.85 else 424242
        request = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=rng.random() < 0.7)
        answers = [call(s.lease.LeaseTimeToLive, request) for s in servers]
        if not any(failed(x) for x in answers):
            assert abs(answers[0].TTL - answers[1].TTL) <= 2, (answers[0], answers[1])
            answers[1].TTL = answers[0].TTL
            for answer in answers:
                keys = sorted(answer.keys)  # etcd lists a lease's keys in map order
                del answer.keys[:]
                answer.keys.extend(keys)
    elif kind < 0.94:
        request = rpc_pb2.LeaseLeasesRequest()
        answers = [call(s.lease.LeaseLeases, request) for s in servers]
        answers = [x if failed(x) else sorted(lease.ID for lease in x.leases) for x in answers]
    elif kind < 0.955:
        choice = rng.random()
        if choice < 0.7:
            revision = rng.randint(gen.compacted + 1, max(gen.compacted + 1, gen.revision - 5))
        elif choice < 0.85:
            revision = rng.randint(max(0, gen.compacted - 2), gen.compacted)  # already compacted
        else:
            revision = gen.revision + rng.randint(1, 3)  # future
        request = rpc_pb2.CompactionRequest(revision=revision, physical=rng.random() < 0.5)
        answers = [call(s.kv.Compact, request) for s in servers]
        if not failed(answers[0]):
            gen.compacted = max(gen.compacted, revision)
    else:
        request = rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", count_only=True)
        answers = [call(s.kv.Range, request) for s in servers]
    log.append((op_index, type(request).__name__, request))
    return request, answers


def current_revision(client):
    return client.kv.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", count_only=True), timeout=10).header.revision


def watch_summary(stream):
    """Per watch id: created/canceled control responses and the ordered events."""
    summary = {}
    for response in stream.responses:
        entry = summary.setdefault(response.watch_id, {"control": [], "events": []})
        if response.created or response.canceled or (not response.events and response.watch_id != -1):
            header_revision = response.header.revision if response.created else None
            entry["control"].append((response.created, response.canceled, response.compact_revision,
                                     response.cancel_reason, header_revision))
        for event in response.events:
            entry["events"].append(event.SerializeToString(deterministic=True))
    return summary


def settle(streams, quiet=1.0, limit=15.0):
    """Waits until no stream has received anything for `quiet` seconds."""
    deadline = time.monotonic() + limit
    counts = [len(s.responses) for s in streams]
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = [len(s.responses) for s in streams]
        if now != counts:
            counts = now
            last_change = time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            return


@pytest.fixture
def pair(pier_etcd_factory, etcd_factory):
    if os.environ.get("PIER_DIFF_AGAINST") == "etcd":
        first = etcd_factory()
    else:
        first = pier_etcd_factory()
    second = etcd_factory()
    clients = [EtcdClient(first.address), EtcdClient(second.address)]
    yield clients
    for client in clients:
        client.close()


def difference(ours, theirs):
    import difflib
    return "\n".join(difflib.unified_diff(str(ours).splitlines(), str(theirs).splitlines(), lineterm="", n=4))


def describe(request):
    text = str(request)
    return text if len(text) < 3000 else text[:3000] + "..."


def test_random_operations_match_etcd(pair):
    gen = Generator(SEED)
    log = []
    watch_streams = [WatchStream(client) for client in pair]
    watch_requests = []

    def create_watch():
        rng = gen.rng
        key, end = gen.keys.range()
        create = rpc_pb2.WatchCreateRequest(key=key, range_end=end, prev_kv=rng.random() < 0.5)
        if rng.random() < 0.5:
            create.start_revision = rng.randint(max(1, gen.compacted - 2), gen.revision + 1)
        if rng.random() < 0.2:
            create.filters.append(rng.choice([0, 1]))
        request = rpc_pb2.WatchRequest(create_request=create)
        watch_requests.append(request)
        for stream in watch_streams:
            stream.send(request)
        # Wait for both created responses so that later writes are ordered after creation.
        count = len(watch_requests)
        for stream in watch_streams:
            stream.wait_for(lambda rs: sum(1 for r in rs if r.created) >= count)
        if create.start_revision:
            # etcd catches a watcher up from history in a loop every 100 ms; a compaction
            # before then cancels it, after then does not. Let it catch up so the outcome
            # does not depend on that timing.
            time.sleep(0.5)

    for i in range(OPS):
        if i % 150 == 0 and len(watch_requests) < 12:
            create_watch()
        request, (ours, theirs) = run_op(gen, pair, i, log)
        assert ours == theirs, (
            f"op {i} (seed {SEED}) differs\nrequest {type(request).__name__}:\n{describe(request)}\n"
            f"diff (- pier, + etcd):\n{difference(ours, theirs)}")
        if i % 20 == 0:
            gen.revision = current_revision(pair[1])

    assert current_revision(pair[0]) == current_revision(pair[1])
    settle(watch_streams)
    ours, theirs = (watch_summary(s) for s in watch_streams)
    for stream in watch_streams:
        assert stream.error is None, stream.error
        stream.close()
    assert sorted(ours) == sorted(theirs)
    for watch_id in sorted(ours):
        assert ours[watch_id]["control"] == theirs[watch_id]["control"], (
            f"watch {watch_id} control responses\n{watch_requests[watch_id] if 0 <= watch_id < len(watch_requests) else ''}")
        assert len(ours[watch_id]["events"]) == len(theirs[watch_id]["events"]), f"watch {watch_id} event count"
        assert ours[watch_id]["events"] == theirs[watch_id]["events"], f"watch {watch_id} events"


def test_error_statuses_match_etcd(pair):
    """Requests etcd refuses, with the codes and texts its clients match on."""
    big = b"x" * (1572864 + 10)
    ops = 129
    cases = [
        ("Put empty key", "kv", "Put", rpc_pb2.PutRequest(key=b"", value=b"v")),
        ("Range empty key", "kv", "Range", rpc_pb2.RangeRequest(key=b"")),
        ("Delete empty key", "kv", "DeleteRange", rpc_pb2.DeleteRangeRequest(key=b"")),
        ("Put too large", "kv", "Put", rpc_pb2.PutRequest(key=b"big", value=big)),
        ("Txn too many ops", "kv", "Txn", rpc_pb2.TxnRequest(success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k%d" % i)) for i in range(ops)])),
        ("Txn duplicate keys", "kv", "Txn", rpc_pb2.TxnRequest(success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"dup")),
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"dup"))])),
        ("Txn put+delete same key", "kv", "Txn", rpc_pb2.TxnRequest(success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"a/1")),
            rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"a/", range_end=b"a0"))])),
        ("Txn compare empty key", "kv", "Txn", rpc_pb2.TxnRequest(compare=[rpc_pb2.Compare(key=b"")])),
        ("Put missing lease", "kv", "Put", rpc_pb2.PutRequest(key=b"k", lease=12345)),
        ("Put ignore_value, missing key", "kv", "Put", rpc_pb2.PutRequest(key=b"nokey", ignore_value=True)),
        ("Put ignore_value with value", "kv", "Put", rpc_pb2.PutRequest(key=b"k", value=b"v", ignore_value=True)),
        ("Put ignore_lease with lease", "kv", "Put", rpc_pb2.PutRequest(key=b"k", lease=5, ignore_lease=True)),
        ("Range future revision", "kv", "Range", rpc_pb2.RangeRequest(key=b"k", revision=1000)),
        ("Compact future revision", "kv", "Compact", rpc_pb2.CompactionRequest(revision=1000)),
        ("Revoke missing lease", "lease", "LeaseRevoke", rpc_pb2.LeaseRevokeRequest(ID=777)),
        ("Lease TTL too large", "lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(ID=5, TTL=9_000_000_001)),
        ("TimeToLive missing lease", "lease", "LeaseTimeToLive", rpc_pb2.LeaseTimeToLiveRequest(ID=778)),
        ("Grant", "lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(ID=6, TTL=60)),
        ("Grant existing", "lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(ID=6, TTL=60)),
        ("Grant short TTL (raised to the minimum)", "lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(ID=7, TTL=1)),
        ("Put a/1", "kv", "Put", rpc_pb2.PutRequest(key=b"a/1", value=b"1")),
        ("Put a/1 again", "kv", "Put", rpc_pb2.PutRequest(key=b"a/1", value=b"2", prev_kv=True)),
        ("Compact", "kv", "Compact", rpc_pb2.CompactionRequest(revision=3)),
        ("Compact again", "kv", "Compact", rpc_pb2.CompactionRequest(revision=3)),
        ("Range compacted revision", "kv", "Range", rpc_pb2.RangeRequest(key=b"a/1", revision=2)),
        ("Range at compact revision", "kv", "Range", rpc_pb2.RangeRequest(key=b"a/1", revision=3)),
        ("Put ignore_lease keeps lease", "kv", "Put", rpc_pb2.PutRequest(key=b"a/1", value=b"3", ignore_lease=True)),
        ("Put ignore_value keeps value", "kv", "Put", rpc_pb2.PutRequest(key=b"a/1", ignore_value=True, prev_kv=True)),
    ]
    for name, service, method, request in cases:
        answers = [call(getattr(getattr(client, service), method), request) for client in pair]
        assert answers[0] == answers[1], f"{name}:\npier: {answers[0]}\netcd: {answers[1]}"


def test_watch_semantics_match_etcd(pair):
    """Client-chosen ids, duplicates, cancel, progress requests, filters and compaction."""
    streams = [WatchStream(client) for client in pair]

    def both(request, count_predicate):
        for stream in streams:
            stream.send(request)
        return [stream.wait_for(count_predicate) for stream in streams]

    for client in pair:
        for i in range(5):
            client.kv.Put(rpc_pb2.PutRequest(key=b"w/%d" % i, value=b"v%d" % i), timeout=10)
        client.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"w/0"), timeout=10)
    requests = [
        rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"w/", range_end=b"w0", start_revision=1,
                                                                      watch_id=7, prev_kv=True)),
        rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"w/", range_end=b"w0", watch_id=7)),
        rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"w/1")),
        rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"w/", range_end=b"w0", start_revision=2,
                                                                      filters=[rpc_pb2.WatchCreateRequest.NOPUT])),
        rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"z", range_end=b"a")),
        rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=0)),
        rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=99)),
    ]
    for request in requests:
        for stream in streams:
            stream.send(request)
    settle(streams)
    for client in pair:
        client.kv.Put(rpc_pb2.PutRequest(key=b"w/1", value=b"again"), timeout=10)
        client.kv.Compact(rpc_pb2.CompactionRequest(revision=5), timeout=10)
    for stream in streams:
        stream.send(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=b"w/", range_end=b"w0", start_revision=3, watch_id=20)))
    settle(streams)
    summaries = [watch_summary(s) for s in streams]
    for stream in streams:
        stream.close()
    assert summaries[0] == summaries[1]
    assert 20 in summaries[0] and summaries[0][20]["control"][-1][2] == 5  # canceled: compacted at 5


def test_progress_request_matches_etcd(pair):
    streams = [WatchStream(client) for client in pair]
    for client in pair:
        client.kv.Put(rpc_pb2.PutRequest(key=b"p", value=b"1"), timeout=10)
    for stream in streams:
        stream.send(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"p")))
        stream.wait_for(lambda rs: any(r.created for r in rs))
        stream.send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
        stream.wait_for(lambda rs: any(r.watch_id == -1 for r in rs))
    progress = [[(r.watch_id, r.header.revision) for r in s.responses if r.watch_id == -1] for s in streams]
    for stream in streams:
        stream.close()
    assert progress[0] == progress[1] == [(-1, 2)]


def test_keepalive_and_leases_match_etcd(pair):
    for client in pair:
        client.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=42, TTL=30), timeout=10)
        client.kv.Put(rpc_pb2.PutRequest(key=b"leased", value=b"x", lease=42), timeout=10)
    answers = []
    for client in pair:
        responses = list(client.lease.LeaseKeepAlive(
            iter([rpc_pb2.LeaseKeepAliveRequest(ID=42), rpc_pb2.LeaseKeepAliveRequest(ID=43)]), timeout=10))
        answers.append([normalize(r) for r in responses])
    assert answers[0] == answers[1]
    ttl = [client.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=42, keys=True), timeout=10)
           for client in pair]
    assert [list(t.keys) for t in ttl] == [[b"leased"], [b"leased"]]
    assert [t.grantedTTL for t in ttl] == [30, 30]
    revoked = [normalize(client.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=42), timeout=10)) for client in pair]
    assert revoked[0] == revoked[1]
    ranges = [call(client.kv.Range, rpc_pb2.RangeRequest(key=b"leased")) for client in pair]
    assert ranges[0] == ranges[1]


def test_lease_expiry_deletes_keys(pair):
    """A lease that is not kept alive expires (etcd's minimum TTL is 2 s; expiry is checked
    every 500 ms) and its keys are deleted with one revision per revoke."""
    for client in pair:
        client.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=55, TTL=2), timeout=10)
        client.kv.Put(rpc_pb2.PutRequest(key=b"ephemeral", value=b"x", lease=55), timeout=10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        counts = [client.kv.Range(rpc_pb2.RangeRequest(key=b"ephemeral"), timeout=10).count for client in pair]
        if counts == [0, 0]:
            break
        time.sleep(0.2)
    assert counts == [0, 0]
    answers = [call(client.kv.Range, rpc_pb2.RangeRequest(key=b"ephemeral", revision=2)) for client in pair]
    assert answers[0] == answers[1]
    ttl = [client.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=55), timeout=10).TTL for client in pair]
    assert ttl == [-1, -1]


def test_member_list_and_status_shape(pair):
    for client in pair:
        client.kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v" * 100), timeout=10)
    members = [client.cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=10) for client in pair]
    for response in members:
        assert len(response.members) == 1
        assert response.members[0].name == "default"
        assert response.members[0].ID == response.header.member_id != 0
        assert response.header.cluster_id != 0
        assert response.header.revision == 0
        assert response.members[0].clientURLs
    statuses = [client.maintenance.Status(rpc_pb2.StatusRequest(), timeout=10) for client in pair]
    for status in statuses:
        assert status.version.startswith("3.4.")
        assert status.leader == status.header.member_id
        assert status.dbSize > 0
        assert status.raftIndex > 0
    assert statuses[0].header.revision == statuses[1].header.revision
    defrag = [normalize(client.maintenance.Defragment(rpc_pb2.DefragmentRequest(), timeout=30)) for client in pair]
    assert defrag[0] == defrag[1]
    alarms = [client.maintenance.Alarm(rpc_pb2.AlarmRequest(), timeout=10) for client in pair]
    assert alarms[0] == alarms[1]


def test_watch_fragments_match_etcd(pair):
    """A watcher that asked for fragments gets a response larger than --max-request-bytes
    split into parts, each flagged `fragment` but the last, as etcd does."""
    value = b"f" * 400_000
    for client in pair:
        for i in range(6):
            client.kv.Put(rpc_pb2.PutRequest(key=b"frag/%d" % i, value=value), timeout=30)
    streams = [WatchStream(client) for client in pair]
    for stream in streams:
        for fragment in (True, False):
            stream.send(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                key=b"frag/", range_end=b"frag0", start_revision=1, fragment=fragment)))
    settle(streams)
    shapes = []
    for stream in streams:
        shape = {}
        for response in stream.responses:
            if response.events:
                shape.setdefault(response.watch_id, []).append(
                    (response.fragment, [e.kv.key for e in response.events]))
        shapes.append(shape)
        stream.close()
    # Flattened, both watchers saw every event once, in order.
    for shape in shapes:
        for watch_id in (0, 1):
            keys = [k for _, ks in shape[watch_id] for k in ks]
            assert keys == [b"frag/%d" % i for i in range(6)]
    assert shapes[0][0] == shapes[1][0], f"fragments differ:\npier {shapes[0][0]}\netcd {shapes[1][0]}"
    assert any(fragment for fragment, _ in shapes[0][0])


def test_space_quota_matches_etcd(pier_etcd_factory, etcd_factory):
    """Past --quota-backend-bytes writes fail with etcd's NOSPACE error and the alarm is listed;
    reads go on working. (How many writes fit differs: etcd counts bolt pages.)"""
    quota = str(4 * 1024 * 1024)
    if os.environ.get("PIER_DIFF_AGAINST") == "etcd":
        first = etcd_factory("--quota-backend-bytes", quota)
    else:
        first = pier_etcd_factory("--quota-backend-bytes", quota)
    second = etcd_factory("--quota-backend-bytes", quota)
    outcomes = []
    for server in (first, second):
        client = EtcdClient(server.address)
        error = None
        for i in range(200):
            try:
                client.kv.Put(rpc_pb2.PutRequest(key=b"fill/%d" % i, value=b"q" * 100_000), timeout=30)
            except grpc.RpcError as e:
                error = (e.code(), e.details())
                break
        # etcd raises the alarm before it answers NOSPACE; Pier proposes it as the error is
        # returned, so it may be listed a moment later.
        deadline = time.monotonic() + 5
        while True:
            alarms = client.maintenance.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=10)
            if alarms.alarms or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        readable = client.kv.Range(rpc_pb2.RangeRequest(key=b"fill/0"), timeout=10).count
        try:
            client.kv.Put(rpc_pb2.PutRequest(key=b"more", value=b"x"), timeout=10)
            after = None
        except grpc.RpcError as e:
            after = (e.code(), e.details())
        outcomes.append((error, [a.alarm for a in alarms.alarms], readable, after))
        client.close()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == (grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
    assert outcomes[0][1] == [rpc_pb2.NOSPACE]


def test_max_request_bytes_flag_matches_etcd(pier_etcd_factory, etcd_factory):
    limit = "10000"
    if os.environ.get("PIER_DIFF_AGAINST") == "etcd":
        first = etcd_factory("--max-request-bytes", limit)
    else:
        first = pier_etcd_factory("--max-request-bytes", limit)
    second = etcd_factory("--max-request-bytes", limit)
    answers = []
    for server in (first, second):
        client = EtcdClient(server.address)
        answers.append([call(client.kv.Put, rpc_pb2.PutRequest(key=b"k", value=b"v" * size))
                        for size in (9000, 10_100, 200_000)])
        client.close()
    assert answers[0] == answers[1], f"pier: {answers[0]}\netcd: {answers[1]}"
    assert answers[0][1] == CallError(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")
