"""Leases against Pier and a real etcd: grant, attach keys, time-to-live, revoke, keep-alive."""
import time

import pytest

import pier


def test_grant_attach_and_revoke(client, prefix):
    lease = client.lease.grant(30)
    assert lease.id > 0 and lease.ttl == 30
    client.kv.put(f"{prefix}/a", b"1", lease=lease)
    client.kv.put(f"{prefix}/b", b"2", lease=lease.id)
    assert client.kv.get(f"{prefix}/a").lease == lease.id
    info = lease.time_to_live(keys=True)
    assert info.id == lease.id and info.granted_ttl == 30 and 0 < info.ttl <= 30
    assert sorted(info.keys) == [f"{prefix}/a".encode(), f"{prefix}/b".encode()]
    assert lease.id in client.lease.leases()
    lease.revoke()
    assert client.kv.get_prefix(f"{prefix}/").count == 0
    assert client.lease.time_to_live(lease.id).ttl == -1


def test_unknown_lease_errors(client, prefix):
    with pytest.raises(pier.LeaseNotFoundError) as err:
        client.lease.revoke(0x1234567)
    assert isinstance(err.value, pier.NotFoundError)
    assert err.value.message == "etcdserver: requested lease not found"
    with pytest.raises(pier.LeaseNotFoundError):
        client.kv.put(f"{prefix}/k", b"v", lease=0x1234567)
    with pytest.raises(pier.LeaseNotFoundError):
        client.lease.keep_alive_once(0x1234567)


def test_grant_with_an_id_taken_fails(client):
    lease = client.lease.grant(30)
    try:
        with pytest.raises(pier.LeaseExistsError):
            client.lease.grant(30, id=lease.id)
    finally:
        lease.revoke()


def test_keep_alive_once_renews(client):
    lease = client.lease.grant(20)
    try:
        assert lease.refresh() == 20
    finally:
        lease.revoke()


def test_keep_alive_outlives_the_ttl_and_expiry_follows_close(client, prefix):
    lease = client.lease.grant(2)
    client.kv.put(f"{prefix}/k", b"v", lease=lease)
    with lease.keep_alive(interval=0.5) as keeper:
        time.sleep(3.5)
        assert keeper.alive and keeper.ttl == 2
        assert client.kv.get(f"{prefix}/k") is not None
    # Without renewals the lease expires and takes its key with it (etcd checks every 500 ms).
    deadline = time.monotonic() + 15
    while client.kv.get(f"{prefix}/k") is not None and time.monotonic() < deadline:
        time.sleep(0.25)
    assert client.kv.get(f"{prefix}/k") is None
    with pytest.raises(pier.LeaseNotFoundError):
        lease.keep_alive()


def test_keep_alive_reports_a_revoked_lease(client):
    lease = client.lease.grant(30)
    keeper = lease.keep_alive(interval=0.2)
    try:
        lease.revoke()
        deadline = time.monotonic() + 10
        while keeper.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not keeper.alive
        assert isinstance(keeper.error, pier.LeaseNotFoundError)
    finally:
        keeper.close()
