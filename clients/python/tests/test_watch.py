"""Watch against Pier and a real etcd: events in order, prefixes, history, prev_kv, compaction, close."""
import threading

import pytest

import pier


def test_watch_a_key(client, prefix):
    key = f"{prefix}/k"
    with client.watch(key) as watch:
        client.kv.put(key, b"1")
        client.kv.put(f"{prefix}/other", b"ignored")
        client.kv.delete(key)
        put, delete = watch.get(timeout=10), watch.get(timeout=10)
    assert (put.type, put.key, put.value) == ("put", key.encode(), b"1")
    assert delete.type == "delete" and delete.key == key.encode()
    assert delete.kv.mod_revision > put.kv.mod_revision


def test_watch_a_prefix_with_prev_kv(client, prefix):
    with client.watch(f"{prefix}/", prefix=True, prev_kv=True) as watch:
        client.kv.put(f"{prefix}/a", b"1")
        client.kv.put(f"{prefix}/b", b"2")
        client.kv.put(f"{prefix}/a", b"3")
        client.kv.put(f"{prefix}0", b"outside")
        events = [watch.get(timeout=10) for _ in range(3)]
        with pytest.raises(TimeoutError):
            watch.get(timeout=0.5)
    assert [(e.key, e.value) for e in events] == [
        (f"{prefix}/a".encode(), b"1"), (f"{prefix}/b".encode(), b"2"), (f"{prefix}/a".encode(), b"3")]
    assert events[0].prev_kv is None and events[2].prev_kv.value == b"1"


def test_watch_from_a_past_revision_replays_history(client, prefix):
    key = f"{prefix}/k"
    start = client.kv.put(key, b"1").revision
    client.kv.put(key, b"2")
    with client.watch(key, start_revision=start) as watch:
        assert [watch.get(timeout=10).value for _ in range(2)] == [b"1", b"2"]


def test_watch_from_a_compacted_revision_raises(client, prefix):
    key = f"{prefix}/k"
    old = client.kv.put(key, b"1").revision
    now = client.kv.put(key, b"2").revision
    client.kv.compact(now)
    with client.watch(key, start_revision=old) as watch:
        with pytest.raises(pier.CompactedError) as err:
            watch.get(timeout=10)
    assert err.value.compact_revision == now


def test_iteration_ends_when_closed_from_another_thread(client, prefix):
    watch = client.watch(f"{prefix}/k")
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(watch))
    reader.start()
    client.kv.put(f"{prefix}/k", b"v")
    for _ in range(100):
        if seen:
            break
        threading.Event().wait(0.1)
    watch.close()
    reader.join(10)
    assert not reader.is_alive()
    assert [e.value for e in seen] == [b"v"]


def test_filters_drop_deletes(client, prefix):
    with client.watch(f"{prefix}/", prefix=True, filters=["nodelete"]) as watch:
        client.kv.put(f"{prefix}/a", b"1")
        client.kv.delete(f"{prefix}/a")
        client.kv.put(f"{prefix}/b", b"2")
        assert [watch.get(timeout=10).type for _ in range(2)] == ["put", "put"]
