"""KV API against Pier and a real etcd: ranges, puts, deletes, transactions, compaction, errors."""
import pytest

import pier
from pier import CreateRevision, ModRevision, Value, Version, ops


def test_health(client):
    assert client.health()


def test_put_then_get(client, prefix):
    key = f"{prefix}/a"
    assert client.kv.get(key) is None
    put = client.kv.put(key, b"one")
    kv = client.kv.get(key)
    assert kv.key == key.encode() and kv.value == b"one"
    assert kv.version == 1 and kv.create_revision == kv.mod_revision == put.revision
    client.kv.put(key, "two")  # str values are sent as UTF-8
    kv = client.kv.get(key)
    assert kv.value == b"two" and kv.version == 2 and kv.create_revision == put.revision


def test_put_returns_previous_value_when_asked(client, prefix):
    key = f"{prefix}/k"
    assert client.kv.put(key, b"1", prev_kv=True).prev_kv is None
    prev = client.kv.put(key, b"2", prev_kv=True).prev_kv
    assert prev.value == b"1" and prev.version == 1
    assert client.kv.put(key, b"3").prev_kv is None


def test_get_at_an_older_revision(client, prefix):
    key = f"{prefix}/k"
    first = client.kv.put(key, b"old").revision
    client.kv.put(key, b"new")
    assert client.kv.get(key, revision=first).value == b"old"
    assert client.kv.get(key).value == b"new"


def test_prefix_and_range_reads(client, prefix):
    for name in ["a", "b", "c", "d"]:
        client.kv.put(f"{prefix}/{name}", name.upper())
    client.kv.put(f"{prefix}0", b"outside the prefix")
    got = client.kv.get_prefix(f"{prefix}/")
    assert [kv.key for kv in got] == [f"{prefix}/{n}".encode() for n in "abcd"]
    assert got.count == 4 and not got.more and got.revision > 0
    between = client.kv.get_range(f"{prefix}/b", f"{prefix}/d")
    assert [kv.value for kv in between] == [b"B", b"C"]


def test_limit_reports_more_and_total_count(client, prefix):
    for i in range(5):
        client.kv.put(f"{prefix}/{i}", str(i))
    got = client.kv.get_prefix(f"{prefix}/", limit=2)
    assert len(got) == 2 and got.more and got.count == 5


def test_sorting(client, prefix):
    client.kv.put(f"{prefix}/b", b"1")
    client.kv.put(f"{prefix}/a", b"2")
    client.kv.put(f"{prefix}/c", b"0")
    desc = client.kv.get_prefix(f"{prefix}/", sort_order="descend")
    assert [kv.key[-1:] for kv in desc] == [b"c", b"b", b"a"]
    by_mod = client.kv.get_prefix(f"{prefix}/", sort_order="ascend", sort_target="mod")
    assert [kv.key[-1:] for kv in by_mod] == [b"b", b"a", b"c"]
    by_value = client.kv.get_prefix(f"{prefix}/", sort_order="descend", sort_target="value")
    assert [kv.value for kv in by_value] == [b"2", b"1", b"0"]
    with pytest.raises(ValueError):
        client.kv.get_prefix(f"{prefix}/", sort_order="sideways")


def test_keys_only_and_count_only(client, prefix):
    client.kv.put(f"{prefix}/x", b"value")
    client.kv.put(f"{prefix}/y", b"value")
    keys = client.kv.get_prefix(f"{prefix}/", keys_only=True)
    assert [kv.value for kv in keys] == [b"", b""] and len(keys) == 2
    counted = client.kv.get_prefix(f"{prefix}/", count_only=True)
    assert counted.count == 2 and len(counted) == 0


def test_delete_and_delete_prefix(client, prefix):
    client.kv.put(f"{prefix}/a", b"1")
    client.kv.put(f"{prefix}/b", b"2")
    client.kv.put(f"{prefix}/c", b"3")
    one = client.kv.delete(f"{prefix}/a", prev_kv=True)
    assert one.deleted == 1 and [kv.value for kv in one.prev_kvs] == [b"1"]
    assert client.kv.delete(f"{prefix}/a").deleted == 0
    rest = client.kv.delete_prefix(f"{prefix}/")
    assert rest.deleted == 2 and rest.prev_kvs == []
    assert client.kv.get_prefix(f"{prefix}/").count == 0


def test_txn_create_if_absent(client, prefix):
    key = f"{prefix}/lock"
    first = (client.kv.txn().if_(Version(key) == 0)
             .then(ops.put(key, b"mine")).else_(ops.get(key)).commit())
    assert first.succeeded and isinstance(first.responses[0], pier.PutResult)
    second = (client.kv.txn().if_(CreateRevision(key) == 0)
              .then(ops.put(key, b"theirs")).else_(ops.get(key)).commit())
    assert not second.succeeded
    assert [kv.value for kv in second.responses[0]] == [b"mine"]


def test_txn_compare_and_swap(client, prefix):
    key = f"{prefix}/cas"
    rev = client.kv.put(key, b"v1").revision
    stale = client.kv.txn([ModRevision(key) < rev], [ops.put(key, b"nope")]).commit()
    assert not stale.succeeded and stale.responses == []
    swapped = (client.kv.txn().if_(Value(key) == b"v1", ModRevision(key) == rev)
               .then(ops.put(key, b"v2", prev_kv=True), ops.delete(f"{prefix}/other"),
                     ops.get_prefix(f"{prefix}/"))
               .commit())
    assert swapped.succeeded
    put, deleted, listed = swapped.responses
    assert put.prev_kv.value == b"v1" and deleted.deleted == 0
    assert [kv.value for kv in listed] == [b"v2"]
    assert swapped.revision == client.kv.get(key).mod_revision
    assert (client.kv.txn().if_(Value(key) != b"v1").commit()).succeeded


def test_nested_txn_and_delete_prefix_op(client, prefix):
    client.kv.put(f"{prefix}/a", b"1")
    result = client.kv.txn().then(
        ops.txn([Version(f"{prefix}/a") > 0], [ops.delete_prefix(f"{prefix}/", prev_kv=True)])).commit()
    inner = result.responses[0]
    assert isinstance(inner, pier.TxnResult) and inner.succeeded
    assert [kv.key for kv in inner.responses[0].prev_kvs] == [f"{prefix}/a".encode()]


def test_txn_with_one_key_twice_is_rejected(client, prefix):
    key = f"{prefix}/dup"
    with pytest.raises(pier.DuplicateKeyError) as err:
        client.kv.txn().then(ops.put(key, b"1"), ops.put(key, b"2")).commit()
    assert err.value.code.name == "INVALID_ARGUMENT"
    assert "duplicate key" in err.value.message


def test_compaction(client, prefix):
    key = f"{prefix}/k"
    old = client.kv.put(key, b"1").revision
    now = client.kv.put(key, b"2").revision
    client.kv.compact(now)
    with pytest.raises(pier.CompactedError) as err:
        client.kv.get(key, revision=old)
    assert isinstance(err.value, pier.OutOfRangeError)
    assert err.value.message == "etcdserver: mvcc: required revision has been compacted"
    assert client.kv.get(key, revision=now).value == b"2"
    with pytest.raises(pier.CompactedError):
        client.kv.compact(old)


def test_future_revision_and_empty_key_errors(client, prefix):
    head = client.kv.put(f"{prefix}/k", b"v").revision
    with pytest.raises(pier.FutureRevisionError):
        client.kv.get(f"{prefix}/k", revision=head + 1000)
    with pytest.raises(pier.EmptyKeyError) as err:
        client.kv.put(b"", b"v")
    assert isinstance(err.value, pier.PierError) and err.value.code.name == "INVALID_ARGUMENT"


def test_too_many_txn_ops(client, prefix):
    with pytest.raises(pier.TooManyOpsError):
        client.kv.txn().then(*[ops.put(f"{prefix}/{i}", b"v") for i in range(129)]).commit()


def test_prefix_range_end():
    assert pier.prefix_range_end(b"abc") == b"abd"
    assert pier.prefix_range_end(b"a\xff") == b"b"
    assert pier.prefix_range_end(b"\xff\xff") == b"\0"
    assert pier.prefix_range_end(b"") == b"\0"
