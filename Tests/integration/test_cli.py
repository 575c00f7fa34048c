"""The `pier` command's client verbs and `pier bench`, run as a user would against a real server."""
import json
import signal
import subprocess
import time
import uuid

import pytest

import pier_servers


@pytest.fixture(scope="module")
def pier_bin():
    return pier_servers.build("pier")


@pytest.fixture
def cli(pier_bin, pier_server):
    """Runs `pier VERB ... --endpoint <server>`; returns the CompletedProcess."""

    def run(*args, stdin=None, timeout=60, check=True):
        result = subprocess.run([pier_bin, *args, "--endpoint", pier_server.address], input=stdin,
                                capture_output=True, text=True, timeout=timeout)
        if check:
            assert result.returncode == 0, f"pier {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        return result

    return run


@pytest.fixture
def spawn(pier_bin, pier_server):
    """Starts a long-running verb (watch, consume --follow); kills it if the test leaves it running."""
    started = []

    def start(*args):
        proc = subprocess.Popen([pier_bin, *args, "--endpoint", pier_server.address], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_until(predicate, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_kv_put_get_delete(cli):
    p = unique("cli-kv") + "/"
    assert cli("kv", "put", p + "a", "1").stdout.startswith("OK")
    cli("kv", "put", p + "b", "2")
    first = json.loads(cli("kv", "put", p + "b", "3", "--prev-kv", "--json").stdout)
    assert first["prev_kv"]["value"] == "2"

    assert cli("kv", "get", p + "a").stdout.splitlines() == [p + "a", "1"]
    listing = json.loads(cli("kv", "get", p, "--prefix", "--json").stdout)
    assert [(kv["key"], kv["value"]) for kv in listing["kvs"]] == [(p + "a", "1"), (p + "b", "3")]
    assert listing["count"] == 2

    limited = json.loads(cli("kv", "get", p, "--prefix", "--limit", "1", "--json").stdout)
    assert len(limited["kvs"]) == 1 and limited["more"] is True

    # --rev reads history: b as it was before the overwrite.
    old = json.loads(cli("kv", "get", p + "b", "--rev", str(first["revision"] - 1), "--json").stdout)
    assert old["kvs"][0]["value"] == "2"

    from_key = cli("kv", "get", p + "b", "--from-key", "--keys-only").stdout.splitlines()
    assert from_key[0] == p + "b" and p + "a" not in from_key

    assert cli("kv", "get", p, "--prefix", "--count-only").stdout.strip() == "2"
    assert cli("kv", "del", p + "a").stdout.strip() == "1"
    gone = json.loads(cli("kv", "del", p, "--prefix", "--prev-kv", "--json").stdout)
    assert gone["deleted"] == 1 and gone["prev_kvs"][0]["key"] == p + "b"
    assert cli("kv", "get", p, "--prefix").stdout == ""


def test_watch_prints_events_and_stops_after_count(cli, spawn):
    p = unique("cli-watch") + "/"
    watcher = spawn("kv", "watch", p, "--prefix", "--count", "3", "--json")
    # The watch is confirmed before it prints anything; write until the first event shows up.
    time.sleep(1.0)
    cli("kv", "put", p + "x", "1")
    cli("kv", "put", p + "y", "2")
    cli("kv", "del", p + "x")
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    events = json_lines(out)
    assert [(e["type"], e["kv"]["key"]) for e in events] == [("PUT", p + "x"), ("PUT", p + "y"), ("DELETE", p + "x")]
    assert events[1]["kv"]["value"] == "2"

    # --rev replays history, in text form.
    replay = cli("kv", "watch", p, "--prefix", "--rev", str(events[0]["kv"]["mod_revision"]), "--count", "2")
    assert replay.stdout.splitlines() == [f"PUT {p}x 1", f"PUT {p}y 2"]


def test_watch_stops_cleanly_on_sigint(cli, spawn):
    key = unique("cli-watch-int")
    watcher = spawn("kv", "watch", key)
    time.sleep(1.0)
    cli("kv", "put", key, "v")
    line = watcher.stdout.readline()
    assert line.strip() == f"PUT {key} v"
    watcher.send_signal(signal.SIGINT)
    assert watcher.wait(15) == 0


def test_lease_grant_ttl_keep_alive_revoke(cli):
    lease = json.loads(cli("lease", "grant", "60", "--json").stdout)
    assert lease["ttl"] == 60
    lease_id = lease["id_hex"]
    key = unique("cli-lease")
    cli("kv", "put", key, "v", "--lease", lease_id)

    info = json.loads(cli("lease", "ttl", lease_id, "--keys", "--json").stdout)
    assert info["granted_ttl"] == 60 and 0 < info["ttl"] <= 60 and info["keys"] == [key]
    assert "granted with TTL 60s" in cli("lease", "ttl", lease_id).stdout
    assert "keepalived with TTL 60s" in cli("lease", "keep-alive", lease_id, "--once").stdout

    assert "revoked" in cli("lease", "revoke", lease_id).stdout
    assert cli("kv", "get", key, "--count-only").stdout.strip() == "0"
    again = cli("lease", "revoke", lease_id, check=False)
    assert again.returncode == 1 and "NOT_FOUND" in again.stderr


def test_topic_create_list_describe_delete(cli):
    topic = unique("cli-topic")
    created = json.loads(cli("topic", "create", topic, "--partitions", "3", "--config", "retention.ms=3600000",
                             "--json").stdout)
    assert len(created["partitions"]) == 3
    listed = json.loads(cli("topic", "list", "--json").stdout)
    assert {"topic": topic, "partitions": 3} in listed
    assert f"{topic}\t3 partitions" in cli("topic", "list").stdout

    described = json.loads(cli("topic", "describe", topic, "--json").stdout)
    assert described["configs"]["retention.ms"] == "3600000"
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert "retention.ms=3600000" in cli("topic", "describe", topic).stdout

    duplicate = cli("topic", "create", topic, check=False)
    assert duplicate.returncode == 1 and "ALREADY_EXISTS" in duplicate.stderr
    assert "deleted" in cli("topic", "delete", topic).stdout
    missing = cli("topic", "describe", topic, check=False)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_produce_then_consume_round_trip(cli, tmp_path):
    topic = unique("cli-log")
    cli("topic", "create", topic, "--partitions", "2")
    lines = [f"user-{i % 5}:event-{i}" for i in range(500)]
    produced = json.loads(cli("produce", topic, "--key-separator", ":", "--json", stdin="\n".join(lines) + "\n").stdout)
    assert produced["acked"] == 500 and produced["failed"] == 0

    records = json_lines(cli("consume", topic, "--json").stdout)
    assert sorted(r["value"] for r in records) == sorted(f"event-{i}" for i in range(500))
    # A key always lands on the same partition, and each partition keeps send order.
    by_key = {}
    for r in records:
        by_key.setdefault(r["key"], set()).add(r["partition"])
        assert r["value"].startswith("event-")
    assert all(len(parts) == 1 for parts in by_key.values())
    for part in (0, 1):
        values = [int(r["value"].split("-")[1]) for r in records if r["partition"] == part]
        assert values == sorted(values)

    # --file, text output with keys, --count, --partition/--from, --from-time.
    more = tmp_path / "more.txt"
    more.write_text("solo\n")
    assert "1 records acknowledged" in cli("produce", topic, "--file", str(more), "--partition", "1").stdout
    assert len(cli("consume", topic, "--count", "7").stdout.splitlines()) == 7
    tail = cli("consume", topic, "--partition", "1", "--from", "latest").stdout
    assert tail == ""
    p1 = [r for r in json_lines(cli("consume", topic, "--partition", "1", "--json").stdout)]
    last = cli("consume", topic, "--partition", "1", "--from", str(p1[-1]["offset"]), "--print-key").stdout
    assert last == "\tsolo\n"
    later = cli("consume", topic, "--from-time", "2100-01-01T00:00:00Z").stdout
    assert later == ""
    assert len(cli("consume", topic, "--from-time", "2000-01-01T00:00:00Z").stdout.splitlines()) == 501


def test_consume_follow_sees_new_records(cli, spawn):
    topic = unique("cli-follow")
    cli("topic", "create", topic)
    follower = spawn("consume", topic, "--follow", "--count", "2")
    time.sleep(1.0)
    cli("produce", topic, stdin="first\nsecond\n")
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert out.splitlines() == ["first", "second"]


def test_group_consume_commits_and_group_verbs_show_it(cli, spawn):
    topic = unique("cli-group-topic")
    group = unique("cli-group")
    cli("topic", "create", topic, "--partitions", "2")
    cli("produce", topic, stdin="".join(f"r{i}\n" for i in range(10)))

    assert len(cli("consume", topic, "--group", group).stdout.splitlines()) == 10
    # The group committed what it printed: a second run resumes after it.
    assert cli("consume", topic, "--group", group).stdout == ""

    groups = json.loads(cli("group", "list", "--json").stdout)
    assert any(g["group"] == group for g in groups)
    assert group in cli("group", "list").stdout
    described = json.loads(cli("group", "describe", group, "--json").stdout)
    assert sum(o["offset"] for o in described["offsets"] if o["topic"] == topic) == 10
    assert all(o["lag"] == 0 for o in described["offsets"])

    # A following member shows up in describe while it runs.
    member = spawn("consume", topic, "--group", group, "--follow")
    assert wait_until(lambda: json.loads(cli("group", "describe", group, "--json").stdout)["members"])
    member.send_signal(signal.SIGINT)
    assert member.wait(15) == 0


def test_errors_exit_nonzero_with_status_name(cli, pier_bin):
    future = cli("kv", "get", "anything", "--rev", "999999999", check=False)
    assert future.returncode == 1
    assert "OUT_OF_RANGE" in future.stderr and "future revision" in future.stderr

    missing = cli("consume", unique("cli-nope"), check=False)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr

    # Nothing listens on port 1 of loopback: the connection is refused.
    down = subprocess.run([pier_bin, "kv", "get", "k", "--endpoint", "127.0.0.1:1"], capture_output=True, text=True,
                          timeout=30)
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr

    usage = cli("topic", "create", "t", "--config", "novalue", check=False)
    assert usage.returncode != 0 and "KEY=VALUE" in usage.stderr


@pytest.mark.parametrize("workload", ["put", "range", "txn", "watch", "produce", "consume"])
def test_bench_reports_throughput_and_latency(cli, workload):
    result = cli("bench", workload, "--duration", "1", "--connections", "2", "--concurrency", "2",
                 "--key-space", "100", "--payload-size", "64", "--json", timeout=120)
    report = json.loads(result.stdout)
    unit = {"watch": "events", "produce": "records", "consume": "records"}.get(workload, "ops")
    assert report["workload"] == workload
    assert report[unit] > 0 and report["per_second"] > 0
    assert report["errors"] == 0, report.get("first_error")
    latency = report["latency_ms"]
    assert set(latency) == {"p50", "p90", "p99", "p99.9", "max"}
    assert 0 <= latency["p50"] <= latency["p99"] <= latency["max"]

    # --rate paces the calls (the watch writer keeps its own 20 ms beat).
    text = cli("bench", workload, "--duration", "0.5", "--key-space", "10", "--payload-size", "16", "--rate", "500").stdout
    assert "latency ms: p50" in text and "p99.9" in text
