"""etcdctl 3.4 (Debian's etcd-client) against Pier and against a real etcd 3.4: the same scenario on
both, outputs compared after normalizing what legitimately differs (member and lease ids,
addresses, timings, raft term and index).
"""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from etcd_fixtures import (ETCDCTL, etcd_factory, etcdctl, needs_etcd,  # noqa: F401
                           pier_etcd_factory)

pytestmark = needs_etcd


class Normalizer:
    """Rewrites one server's output so that the two servers' outputs can be compared."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.ids = {}

    def learn(self, identifier):
        if identifier not in self.ids:
            self.ids[identifier] = f"<id{len(self.ids)}>"

    def __call__(self, text):
        # clientv3's JSON log lines (retries, snapshot progress) carry timestamps and uuids.
        text = "".join(line for line in text.splitlines(keepends=True) if not line.startswith('{"level"'))
        text = text.replace(self.endpoint, "<endpoint>")
        for match in re.finditer(r"lease ([0-9a-f]+) granted", text):
            self.learn(match.group(1))
        for identifier, placeholder in sorted(self.ids.items(), key=lambda item: -len(item[0])):
            text = re.sub(rf"\b{identifier}\b", placeholder, text)
        # Lock and election keys end in the session's lease id in unpadded hex.
        text = re.sub(r"(mylock|myelection)/[0-9a-f]+", r"\1/<lease>", text)
        text = re.sub(r"remaining\(\d+s\)", "remaining(<n>s)", text)
        # etcd lists a lease's keys in Go map order.
        text = re.sub(r"attached keys\(\[([^\]]*)\]\)",
                      lambda m: "attached keys([" + " ".join(sorted(m.group(1).split())) + "])", text)
        text = re.sub(r"took = [0-9.]+[µmn]?s", "took = <t>", text)
        # -w fields prints the header's ids and term.
        text = re.sub(r'"(ClusterID|MemberID|RaftTerm)" : \d+', r'"\1" : <n>', text)
        return text


def run_both(servers, *args, stdin=None, json_output=False):
    """Runs one etcdctl command against both servers; returns [(code, stdout, stderr)] normalized."""
    results = []
    for endpoint, normalize in servers:
        code, out, err = etcdctl(endpoint, *args, stdin=stdin)
        if json_output and code == 0:
            out = json.dumps(strip_json_header(json.loads(out)), sort_keys=True)
        results.append((code, normalize(out), normalize(err)))
    return results


def strip_json_header(value):
    """Drops the per-server header fields from etcdctl's JSON output."""
    if isinstance(value, dict):
        return {k: strip_json_header(v) for k, v in value.items()
                if k not in ("cluster_id", "member_id", "raft_term")}
    if isinstance(value, list):
        return [strip_json_header(v) for v in value]
    return value


@pytest.fixture
def servers(pier_etcd_factory, etcd_factory):
    # PIER_DIFF_AGAINST=etcd runs the scenario etcd-against-etcd (checks the test itself).
    pier = etcd_factory() if os.environ.get("PIER_DIFF_AGAINST") == "etcd" else pier_etcd_factory()
    etcd = etcd_factory()
    return [(pier.address, Normalizer(pier.address)), (etcd.address, Normalizer(etcd.address))]


def same(servers, *args, stdin=None, json_output=False, expect_code=0, stream=1):
    """Asserts both servers give etcdctl the same exit code and output; returns stdout (or
    stderr with stream=2)."""
    pier, etcd = run_both(servers, *args, stdin=stdin, json_output=json_output)
    assert pier == etcd, f"etcdctl {' '.join(args)}\npier: {pier}\netcd: {etcd}"
    assert pier[0] == expect_code, f"etcdctl {' '.join(args)} exited {pier[0]}: {pier[2]}"
    return pier[stream]


def test_put_get_delete(servers):
    assert same(servers, "put", "foo", "bar") == "OK\n"
    for key, value in [("foo1", "v1"), ("foo2", "v2"), ("foo3", "v3"), ("zoo", "z"), ("a", "1")]:
        same(servers, "put", key, value)
    same(servers, "put", "foo1", "v1b")
    assert same(servers, "get", "foo") == "foo\nbar\n"
    same(servers, "get", "foo", "--prefix")
    same(servers, "get", "foo", "--prefix", "--keys-only")
    same(servers, "get", "foo", "--prefix", "--print-value-only")
    same(servers, "get", "foo1", "--from-key")
    same(servers, "get", "", "--from-key", "--limit", "3")
    same(servers, "get", "foo1", "--rev", "3")
    same(servers, "get", "foo1", "--rev", "2")
    same(servers, "get", "foo", "--prefix", "--sort-by=MODIFY", "--order=DESCEND")
    same(servers, "get", "foo", "--prefix", "--sort-by=VALUE", "--order=ASCEND")
    same(servers, "get", "foo", "--prefix", "--sort-by=CREATE", "--order=DESCEND", "--limit", "2")
    same(servers, "get", "foo", "--prefix", "--limit", "2")
    same(servers, "get", "foo", "--prefix", "-w", "json", json_output=True)
    same(servers, "get", "foo1", "-w", "fields")
    same(servers, "put", "foo2", "v2b", "--prev-kv")
    same(servers, "get", "foo", "--rev", "100", expect_code=1)
    assert same(servers, "del", "foo3") == "1\n"
    same(servers, "del", "nothing")
    same(servers, "del", "foo", "--prefix", "--prev-kv")
    same(servers, "del", "a", "--from-key")
    same(servers, "get", "", "--from-key")


def test_txn_interactive(servers):
    same(servers, "put", "key1", "v1")
    script = 'value("key1") = "v1"\nmod("key1") > "0"\n\nput key1 v2\nput key2 x\nget key1\n\nget key1\n\n'
    same(servers, "txn", "-i", stdin=script)
    same(servers, "txn", "-i", stdin=script)  # now the compare fails
    same(servers, "txn", "-w", "json", stdin='version("key2") = "1"\n\ndel key2\n\n\n', json_output=True)
    same(servers, "get", "key", "--prefix")


def test_watch_history_and_live(servers):
    for key, value in [("w1", "a"), ("w2", "b"), ("other", "c")]:
        same(servers, "put", key, value)
    same(servers, "del", "w1")
    watchers = []
    env = dict(os.environ, ETCDCTL_API="3")
    for endpoint, _ in servers:
        for args in (["watch", "--rev", "1", "--prefix", "w"], ["watch", "w2", "--prev-kv"], ["watch", "--prefix", "w", "--rev", "3"]):
            watchers.append(subprocess.Popen([ETCDCTL, "--endpoints", endpoint, *args], stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True, env=env))
    time.sleep(1.5)
    same(servers, "put", "w2", "b2")
    same(servers, "put", "w3", "c")
    same(servers, "txn", stdin='\nput w4 d\ndel w3\n\n\n')
    time.sleep(1.5)
    outputs = []
    for process in watchers:
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        outputs.append(out)
    half = len(outputs) // 2
    assert outputs[:half] == outputs[half:], f"pier: {outputs[:half]}\netcd: {outputs[half:]}"
    assert "PUT\nw1\na\n" in outputs[0] and "DELETE\nw3\n" in outputs[0]


def test_leases(servers):
    same(servers, "lease", "grant", "60")
    out = same(servers, "lease", "list")
    assert "found 1 leases" in out
    ids = [list(normalize.ids)[0] for _, normalize in servers]
    pier_id, etcd_id = ids

    def both(*template):
        results = []
        for (endpoint, normalize), lease in zip(servers, ids):
            args = [a.replace("{lease}", lease) for a in template]
            code, out, err = etcdctl(endpoint, *args)
            results.append((code, normalize(out), normalize(err)))
        assert results[0] == results[1], f"{template}\npier: {results[0]}\netcd: {results[1]}"
        return results[0][1]

    both("put", "--lease={lease}", "leased", "x")
    both("put", "--lease={lease}", "leased2", "y")
    assert "attached keys([leased leased2])" in both("lease", "timetolive", "{lease}", "--keys")
    assert "keepalived with TTL(60)" in both("lease", "keep-alive", "--once", "{lease}")
    assert "revoked" in both("lease", "revoke", "{lease}")
    assert both("get", "leased", "--prefix") == ""
    same(servers, "lease", "revoke", "1234", expect_code=1)
    same(servers, "lease", "timetolive", "1234")
    same(servers, "put", "--lease=1234", "k", "v", expect_code=1)
    assert pier_id and etcd_id


def test_lock_and_elect(servers):
    same(servers, "lock", "mylock", "echo", "inside the lock")
    # elect holds leadership until interrupted; its output names the key it won.
    env = dict(os.environ, ETCDCTL_API="3")
    outputs = []
    for endpoint, normalize in servers:
        leader = subprocess.Popen([ETCDCTL, "--endpoints", endpoint, "elect", "myelection", "proposal-one"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(1.5)
        listener = subprocess.Popen([ETCDCTL, "--endpoints", endpoint, "elect", "-l", "myelection"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(1.5)
        results = []
        for process in (leader, listener):
            process.send_signal(signal.SIGINT)
            try:
                out, _ = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                out, _ = process.communicate()
            results.append(normalize(out))
        outputs.append(results)
    assert outputs[0] == outputs[1], f"pier: {outputs[0]}\netcd: {outputs[1]}"
    assert "proposal-one" in outputs[0][0] and "proposal-one" in outputs[0][1]


def test_compaction(servers):
    for i in range(5):
        same(servers, "put", "c", str(i))
    same(servers, "compaction", "4")
    same(servers, "get", "c", "--rev", "3", expect_code=1)
    same(servers, "get", "c", "--rev", "4")
    same(servers, "compaction", "4", expect_code=1)
    same(servers, "compaction", "100", expect_code=1)


def test_endpoint_and_member_commands(servers, tmp_path):
    same(servers, "put", "k", "v" * 100)
    assert "is healthy" in same(servers, "endpoint", "health", stream=2)
    statuses = []
    for endpoint, _ in servers:
        code, out, err = etcdctl(endpoint, "endpoint", "status", "-w", "json")
        assert code == 0, err
        statuses.append(json.loads(out)[0]["Status"])
    for status in statuses:
        assert status["version"].startswith("3.4.")
        assert status["leader"] == status["header"]["member_id"]
        assert status["dbSize"] > 0
    code, out, err = etcdctl(servers[0][0], "endpoint", "status")
    assert code == 0 and servers[0][0] in out, err
    members = []
    for endpoint, normalize in servers:
        code, out, err = etcdctl(endpoint, "member", "list", "-w", "json")
        assert code == 0, err
        listed = json.loads(out)["members"]
        assert len(listed) == 1 and listed[0]["name"] == "default"
        assert listed[0]["clientURLs"] == [f"http://{endpoint}"]
        members.append(listed)
        code, out, err = etcdctl(endpoint, "member", "list")
        assert code == 0 and ", started, default, " in out, err
    same(servers, "alarm", "list")
    assert "Finished defragmenting" in same(servers, "defrag")
    for endpoint, _ in servers[:1]:
        path = tmp_path / "snap.db"
        code, out, err = etcdctl(endpoint, "snapshot", "save", str(path))
        assert code == 0, err
        assert path.stat().st_size > 0
