/* Tests of watches (events, history, compaction, cancellation) and leases. */
#include "testing.h"

#include <stdlib.h>

typedef struct watch_log {
    int events;
    int puts, deletes;
    int with_prev;
    int64_t last_rev;
    char last_value[64];
    bool ended;
    pier_status end;
    int progress;
} watch_log;

static void on_watch(void *user, int64_t revision, const pier_event *ev, size_t n,
                     const pier_status *end) {
    watch_log *l = user;
    if (end) {
        l->ended = true;
        l->end = *end;
        return;
    }
    if (n == 0) l->progress++;
    l->last_rev = revision;
    for (size_t i = 0; i < n; i++) {
        l->events++;
        if (ev[i].type == PIER_EVENT_PUT) {
            l->puts++;
            snprintf(l->last_value, sizeof l->last_value, "%.*s", (int)ev[i].kv.value_len,
                     ev[i].kv.value);
        } else {
            l->deletes++;
        }
        if (ev[i].has_prev_kv) l->with_prev++;
    }
}

static void test_watch_prefix(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    const char *p = t_key("watch/");
    uint8_t end[256];
    size_t end_len = pier_prefix_end(p, strlen(p), end, sizeof end);
    watch_log log = {0};
    pier_watch_options o = {.range_end = end, .range_end_len = end_len, .prev_kv = true};
    pier_watch *w;
    int rc = pier_watch_start(c, p, strlen(p), &o, on_watch, &log, &w, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    const char *a = t_key("watch/a"), *b = t_key("watch/b"), *other = t_key("other");
    rc = pier_kv_put(c, a, strlen(a), "1", 1, NULL, NULL, &st);
    if (!rc) rc = pier_kv_put(c, other, strlen(other), "x", 1, NULL, NULL, &st);
    if (!rc) rc = pier_kv_put(c, b, strlen(b), "2", 1, NULL, NULL, &st);
    if (!rc) rc = pier_kv_put(c, a, strlen(a), "3", 1, NULL, NULL, &st);
    if (!rc) rc = pier_kv_delete(c, b, strlen(b), NULL, NULL, &st);
    bool got = rc == 0 && t_poll_count(c, &log.events, 4, 5000);
    pier_watch_cancel(w);
    /* After cancel no callback may run: a later put must not be counted. */
    int before = log.events;
    if (!rc) rc = pier_kv_put(c, a, strlen(a), "4", 1, NULL, NULL, &st);
    pier_client_run_for(c, 200);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK(got);
    CHECK_EQ(log.events, 4);
    CHECK_EQ(before, 4);
    CHECK_EQ(log.puts, 3);
    CHECK_EQ(log.deletes, 1);
    CHECK_EQ(log.with_prev, 2); /* the second put of a and the delete of b */
    CHECK(strcmp(log.last_value, "3") == 0);
    CHECK(!log.ended);
}

static void test_watch_history(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    const char *k = t_key("hist");
    pier_put_result p1;
    int rc = pier_kv_put(c, k, strlen(k), "h1", 2, NULL, &p1, &st);
    int64_t r1 = p1.revision;
    pier_put_result_free(&p1);
    if (!rc) rc = pier_kv_put(c, k, strlen(k), "h2", 2, NULL, NULL, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    watch_log log = {0};
    pier_watch_options o = {.start_revision = r1};
    pier_watch *w;
    rc = pier_watch_start(c, k, strlen(k), &o, on_watch, &log, &w, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    bool got = t_poll_count(c, &log.events, 2, 5000);
    pier_watch_cancel(w);
    pier_client_free(c);
    CHECK(got);
    CHECK_EQ(log.events, 2);
    CHECK(strcmp(log.last_value, "h2") == 0);
}

static void test_watch_compacted(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    const char *k = t_key("wcompact");
    pier_put_result p1, p2;
    memset(&p2, 0, sizeof p2);
    int rc = pier_kv_put(c, k, strlen(k), "a", 1, NULL, &p1, &st);
    if (!rc) rc = pier_kv_put(c, k, strlen(k), "b", 1, NULL, &p2, &st);
    int64_t r1 = p1.revision, r2 = p2.revision;
    pier_put_result_free(&p1);
    pier_put_result_free(&p2);
    if (!rc) rc = pier_kv_compact(c, r2, false, NULL, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    watch_log log = {0};
    pier_watch_options o = {.start_revision = r1};
    pier_watch *w = NULL;
    /* etcd confirms the watch, then cancels it with the compact revision. */
    rc = pier_watch_start(c, k, strlen(k), &o, on_watch, &log, &w, &st);
    int64_t crev = 0;
    bool ended = false;
    if (rc == PIER_OK) {
        t_poll_until(c, &log.ended, 5000);
        ended = log.ended;
        crev = pier_watch_compact_revision(w);
        pier_watch_cancel(w);
        st = log.end;
        rc = st.code;
    } else {
        ended = true;
        crev = r2; /* start itself reported it */
    }
    pier_client_free(c);
    CHECK(ended);
    CHECK_CODE(rc, PIER_OUT_OF_RANGE, st);
    CHECK_EQ(crev, r2);
}

typedef struct cancel_in_cb {
    pier_watch *w;
    int calls;
} cancel_in_cb;

static void cancel_from_callback(void *user, int64_t revision, const pier_event *ev, size_t n,
                                 const pier_status *end) {
    (void)revision; (void)ev; (void)n; (void)end;
    cancel_in_cb *x = user;
    x->calls++;
    pier_watch_cancel(x->w);
}

static void test_watch_cancel_in_callback(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    const char *k = t_key("wcancel");
    cancel_in_cb x = {0};
    int rc = pier_watch_start(c, k, strlen(k), NULL, cancel_from_callback, &x, &x.w, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    rc = pier_kv_put(c, k, strlen(k), "1", 1, NULL, NULL, &st);
    if (!rc) rc = pier_kv_put(c, k, strlen(k), "2", 1, NULL, NULL, &st);
    pier_client_run_for(c, 300);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK_EQ(x.calls, 1);
}

typedef struct blocking_in_cb {
    int rc;
    bool called;
} blocking_in_cb;

static pier_client *g_client;

static void blocking_from_callback(void *user, int64_t revision, const pier_event *ev, size_t n,
                                   const pier_status *end) {
    (void)revision; (void)ev; (void)n; (void)end;
    blocking_in_cb *x = user;
    if (x->called) return;
    x->called = true;
    pier_status st;
    x->rc = pier_kv_get(g_client, "x", 1, NULL, NULL, &st);
}

static void test_blocking_call_in_callback_refused(void) {
    pier_client *c = t_connect();
    if (!c) return;
    g_client = c;
    pier_status st;
    const char *k = t_key("wblock");
    blocking_in_cb x = {0};
    pier_watch *w;
    int rc = pier_watch_start(c, k, strlen(k), NULL, blocking_from_callback, &x, &w, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    rc = pier_kv_put(c, k, strlen(k), "1", 1, NULL, NULL, &st);
    t_poll_until(c, &x.called, 5000);
    pier_watch_cancel(w);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK(x.called);
    CHECK_EQ(x.rc, PIER_FAILED_PRECONDITION);
}

static void test_many_watches(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    enum { N = 40 };
    pier_watch *w[N];
    watch_log logs[N];
    memset(logs, 0, sizeof logs);
    const char *k = t_key("wmany");
    int rc = 0, started = 0;
    for (int i = 0; i < N && rc == 0; i++) {
        rc = pier_watch_start(c, k, strlen(k), NULL, on_watch, &logs[i], &w[i], &st);
        if (!rc) started++;
    }
    if (!rc) rc = pier_kv_put(c, k, strlen(k), "v", 1, NULL, NULL, &st);
    int total = 0;
    for (int tries = 0; rc == 0 && tries < 100 && total < N; tries++) {
        pier_client_poll(c, 50);
        total = 0;
        for (int i = 0; i < N; i++) total += logs[i].events;
    }
    for (int i = 0; i < started; i++) pier_watch_cancel(w[i]);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK_EQ(total, N);
}

/* ---------------------------------------------------------------------------------------- */
/* leases */

typedef struct keeper_log {
    int renewals;
    int64_t last_ttl;
    bool ended;
    int end_code;
} keeper_log;

static void on_keep(void *user, int64_t id, int64_t ttl, const pier_status *end) {
    (void)id;
    keeper_log *l = user;
    if (end) {
        l->ended = true;
        l->end_code = end->code;
        return;
    }
    l->renewals++;
    l->last_ttl = ttl;
}

static void test_lease_lifecycle(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    int64_t id = 0, granted = 0;
    int rc = pier_lease_grant(c, 30, 0, &id, &granted, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    const char *k = t_key("leased");
    pier_put_options po = {.lease = id};
    rc = pier_kv_put(c, k, strlen(k), "v", 1, &po, NULL, &st);
    pier_lease_info info = {0};
    if (!rc) rc = pier_lease_time_to_live(c, id, true, &info, &st);
    int64_t ttl_left = info.ttl, info_granted = info.granted_ttl;
    int key_ok = info.n_keys == 1 && info.keys[0].key_len == strlen(k) &&
                 memcmp(info.keys[0].key, k, strlen(k)) == 0;
    pier_lease_info_free(&info);
    int64_t ttl = 0;
    if (!rc) rc = pier_lease_keep_alive_once(c, id, &ttl, &st);
    int64_t *ids = NULL;
    size_t n_ids = 0;
    if (!rc) rc = pier_lease_list(c, &ids, &n_ids, &st);
    int listed = 0;
    for (size_t i = 0; i < n_ids; i++) listed |= ids[i] == id;
    free(ids);
    if (!rc) rc = pier_lease_revoke(c, id, &st);
    pier_range_result r = {0};
    if (!rc) rc = pier_kv_get(c, k, strlen(k), NULL, &r, &st);
    size_t after = r.n_kvs;
    pier_range_result_free(&r);
    pier_status st2, st3;
    int64_t ttl2 = 1;
    int rc2 = rc ? 0 : pier_lease_keep_alive_once(c, id, &ttl2, &st2);
    int rc3 = rc ? 0 : pier_lease_revoke(c, id, &st3);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK(id != 0);
    CHECK_EQ(granted, 30);
    CHECK(ttl_left > 0 && ttl_left <= 30);
    CHECK_EQ(info_granted, 30);
    CHECK(key_ok);
    CHECK(ttl > 0);
    CHECK(listed);
    CHECK_EQ(after, 0);
    CHECK_CODE(rc2, PIER_NOT_FOUND, st2);
    CHECK_CODE(rc3, PIER_NOT_FOUND, st3);
    CHECK(strcmp(st3.message, "etcdserver: requested lease not found") == 0);
}

static void test_lease_keeper(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    int64_t id = 0;
    /* TTL 3 s: renewals every second, so one is seen within the 1.6 s run below. */
    int rc = pier_lease_grant(c, 3, 0, &id, NULL, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    keeper_log log = {0};
    pier_lease_keeper *k;
    rc = pier_lease_keep_alive_start(c, id, on_keep, &log, &k, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    pier_client_run_for(c, 1600);
    int renewals = log.renewals;
    /* Revoking makes the next renewal report the lease gone. */
    rc = pier_lease_revoke(c, id, &st);
    t_poll_until(c, &log.ended, 3000);
    pier_lease_keep_alive_stop(k);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK(renewals >= 1);
    CHECK(log.last_ttl > 0);
    CHECK(log.ended);
    CHECK_EQ(log.end_code, PIER_NOT_FOUND);
}

static void test_lease_expiry_removes_key(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    int64_t id = 0;
    int rc = pier_lease_grant(c, 1, 0, &id, NULL, &st);
    const char *k = t_key("expire");
    pier_put_options po = {.lease = id};
    if (!rc) rc = pier_kv_put(c, k, strlen(k), "v", 1, &po, NULL, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    /* etcd may take up to ~1.5 s past the TTL to expire a lease; allow generously. */
    size_t n = 1;
    for (int i = 0; i < 40 && n > 0 && rc == 0; i++) {
        pier_client_run_for(c, 200);
        pier_range_result r;
        rc = pier_kv_get(c, k, strlen(k), NULL, &r, &st);
        if (!rc) n = r.n_kvs;
        pier_range_result_free(&r);
    }
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK_EQ(n, 0);
}

const t_case watch_cases[] = {
    {"watch/prefix", test_watch_prefix},
    {"watch/history", test_watch_history},
    {"watch/compacted", test_watch_compacted},
    {"watch/cancel_in_callback", test_watch_cancel_in_callback},
    {"watch/blocking_call_in_callback_refused", test_blocking_call_in_callback_refused},
    {"watch/many_watches_one_connection", test_many_watches},
    {"lease/lifecycle", test_lease_lifecycle},
    {"lease/keeper", test_lease_keeper},
    {"lease/expiry_removes_key", test_lease_expiry_removes_key},
    {NULL, NULL},
};
