/* Tests of the transport, health and the etcd KV API (range, put, delete, txn, compact). */
#define _GNU_SOURCE
#include "testing.h"

#include "internal.h"
#include "etcdserverpb/rpc.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <stdlib.h>

/* ---------------------------------------------------------------------------------------- */
/* unit tests (no server needed) */

static void test_percent_decode(void) {
    const char *in = "etcdserver:%20key%20is%20not%20provided%2";
    char *out = pier__percent_decode((const uint8_t *)in, strlen(in));
    CHECK(out);
    int same = strcmp(out, "etcdserver: key is not provided%2") == 0;
    char *utf = pier__percent_decode((const uint8_t *)"caf%C3%A9 %zz", 13);
    int same2 = utf && strcmp(utf, "caf\xc3\xa9 %zz") == 0;
    free(out);
    free(utf);
    CHECK(same);
    CHECK(same2);
}

static void test_prefix_end(void) {
    uint8_t out[8];
    size_t n = pier_prefix_end("abc", 3, out, sizeof out);
    CHECK_BYTES(out, n, "abd");
    n = pier_prefix_end("a\xff", 2, out, sizeof out);
    CHECK_BYTES(out, n, "b");
    n = pier_prefix_end("\xff\xff", 2, out, sizeof out);
    CHECK_EQ(n, 1);
    CHECK_EQ(out[0], 0);
}

static void test_bad_endpoint(void) {
    pier_status st;
    CHECK(pier_client_new("no-port", NULL, &st) == NULL);
    CHECK_EQ(st.code, PIER_INVALID_ARGUMENT);
    /* Port 1 on loopback is closed: a clean UNAVAILABLE, no hang. */
    pier_client_options o = {.connect_timeout_ms = 2000};
    CHECK(pier_client_new("127.0.0.1:1", &o, &st) == NULL);
    CHECK_EQ(st.code, PIER_UNAVAILABLE);
}

static void test_code_names(void) {
    CHECK(strcmp(pier_code_name(PIER_OK), "OK") == 0);
    CHECK(strcmp(pier_code_name(PIER_UNAUTHENTICATED), "UNAUTHENTICATED") == 0);
}

const t_case unit_cases[] = {
    {"unit/percent_decode", test_percent_decode},
    {"unit/prefix_end", test_prefix_end},
    {"unit/bad_endpoint", test_bad_endpoint},
    {"unit/code_names", test_code_names},
    {NULL, NULL},
};

/* ---------------------------------------------------------------------------------------- */

static void test_health(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    int serving = -1;
    int rc = pier_health_check(c, "", &serving, &st);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK_EQ(serving, PIER_HEALTH_SERVING);
}

static void test_put_get(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    const char *k = t_key("put-get");
    pier_put_result pr;
    int rc = pier_kv_put(c, k, strlen(k), "v1", 2, NULL, &pr, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    int64_t rev = pr.revision;
    bool had_prev = pr.has_prev_kv;
    pier_put_result_free(&pr);

    pier_range_result r;
    rc = pier_kv_get(c, k, strlen(k), NULL, &r, &st);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK(rev > 0);
    CHECK(!had_prev);
    size_t n = r.n_kvs;
    pier_kv kv = n ? r.kvs[0] : (pier_kv){0};
    int vok = n && kv.value_len == 2 && memcmp(kv.value, "v1", 2) == 0;
    int64_t cnt = r.count, rrev = r.revision;
    pier_range_result_free(&r);
    CHECK_EQ(n, 1);
    CHECK(vok);
    CHECK_EQ(kv.version, 1);
    CHECK_EQ(kv.create_revision, rev);
    CHECK_EQ(kv.mod_revision, rev);
    CHECK_EQ(cnt, 1);
    CHECK(rrev >= rev);
}

static void test_get_missing(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    const char *k = t_key("missing");
    pier_range_result r;
    int rc = pier_kv_get(c, k, strlen(k), NULL, &r, &st);
    pier_client_free(c);
    CHECK_OK(rc, st);
    size_t n = r.n_kvs;
    int64_t cnt = r.count;
    pier_range_result_free(&r);
    CHECK_EQ(n, 0);
    CHECK_EQ(cnt, 0);
}

static void test_put_prev_kv_and_versions(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    const char *k = t_key("prev");
    int rc = pier_kv_put(c, k, strlen(k), "a", 1, NULL, NULL, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    pier_put_options po = {.prev_kv = true};
    pier_put_result pr;
    rc = pier_kv_put(c, k, strlen(k), "b", 1, &po, &pr, &st);
    pier_range_result r = {0};
    if (!rc) rc = pier_kv_get(c, k, strlen(k), NULL, &r, &st);
    pier_client_free(c);
    bool has = pr.has_prev_kv;
    int prev_ok = has && pr.prev_kv.value_len == 1 && pr.prev_kv.value[0] == 'a';
    pier_put_result_free(&pr);
    int64_t ver = r.n_kvs ? r.kvs[0].version : -1;
    pier_range_result_free(&r);
    CHECK_OK(rc, st);
    CHECK(has);
    CHECK(prev_ok);
    CHECK_EQ(ver, 2);
}

static void put_n(pier_client *c, const char *base, int n, pier_status *st, int *rc) {
    char k[256], v[32];
    for (int i = 0; i < n && *rc == 0; i++) {
        snprintf(k, sizeof k, "%s%s%02d", t_prefix, base, i);
        snprintf(v, sizeof v, "value-%d", i);
        *rc = pier_kv_put(c, k, strlen(k), v, strlen(v), NULL, NULL, st);
    }
}

static void test_range_prefix_limit_sort(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    int rc = 0;
    put_n(c, "range/", 5, &st, &rc);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    const char *p = t_key("range/");
    uint8_t end[256];
    size_t end_len = pier_prefix_end(p, strlen(p), end, sizeof end);

    pier_range_options o = {.range_end = end, .range_end_len = end_len};
    pier_range_result all, lim, desc, cnt, keys;
    memset(&lim, 0, sizeof lim); memset(&desc, 0, sizeof desc);
    memset(&cnt, 0, sizeof cnt); memset(&keys, 0, sizeof keys);
    rc = pier_kv_get(c, p, strlen(p), &o, &all, &st);
    pier_range_options ol = o;
    ol.limit = 2;
    if (!rc) rc = pier_kv_get(c, p, strlen(p), &ol, &lim, &st);
    pier_range_options od = o;
    od.sort_order = PIER_SORT_DESCEND;
    od.sort_target = PIER_SORT_BY_KEY;
    if (!rc) rc = pier_kv_get(c, p, strlen(p), &od, &desc, &st);
    pier_range_options oc = o;
    oc.count_only = true;
    if (!rc) rc = pier_kv_get(c, p, strlen(p), &oc, &cnt, &st);
    pier_range_options ok = o;
    ok.keys_only = true;
    if (!rc) rc = pier_kv_get(c, p, strlen(p), &ok, &keys, &st);
    pier_client_free(c);

    size_t all_n = all.n_kvs, lim_n = lim.n_kvs, cnt_n = cnt.n_kvs;
    bool lim_more = lim.more;
    int64_t lim_count = lim.count, cnt_count = cnt.count;
    char first_desc[256] = "", first_all[256] = "";
    if (desc.n_kvs) snprintf(first_desc, sizeof first_desc, "%.*s", (int)desc.kvs[0].key_len, desc.kvs[0].key);
    if (all.n_kvs) snprintf(first_all, sizeof first_all, "%.*s", (int)all.kvs[0].key_len, all.kvs[0].key);
    size_t keys_vlen = keys.n_kvs ? keys.kvs[0].value_len : 99;
    pier_range_result_free(&all);
    pier_range_result_free(&lim);
    pier_range_result_free(&desc);
    pier_range_result_free(&cnt);
    pier_range_result_free(&keys);
    CHECK_OK(rc, st);
    CHECK_EQ(all_n, 5);
    CHECK(strcmp(first_all, t_key("range/00")) == 0);
    CHECK_EQ(lim_n, 2);
    CHECK(lim_more);
    CHECK_EQ(lim_count, 5);
    CHECK(strcmp(first_desc, t_key("range/04")) == 0);
    CHECK_EQ(cnt_n, 0);
    CHECK_EQ(cnt_count, 5);
    CHECK_EQ(keys_vlen, 0);
}

static void test_delete(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    int rc = 0;
    put_n(c, "del/", 3, &st, &rc);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    const char *one = t_key("del/00");
    pier_delete_options dop = {.prev_kv = true};
    pier_delete_result d1, d2, d3;
    memset(&d2, 0, sizeof d2); memset(&d3, 0, sizeof d3);
    rc = pier_kv_delete(c, one, strlen(one), &dop, &d1, &st);
    const char *p = t_key("del/");
    uint8_t end[256];
    size_t end_len = pier_prefix_end(p, strlen(p), end, sizeof end);
    pier_delete_options dr = {.range_end = end, .range_end_len = end_len};
    if (!rc) rc = pier_kv_delete(c, p, strlen(p), &dr, &d2, &st);
    if (!rc) rc = pier_kv_delete(c, p, strlen(p), &dr, &d3, &st);
    pier_client_free(c);
    int64_t del1 = d1.deleted, del2 = d2.deleted, del3 = d3.deleted;
    size_t prevs = d1.n_prev_kvs;
    int prev_ok = prevs == 1 && d1.prev_kvs[0].value_len == 7 && memcmp(d1.prev_kvs[0].value, "value-0", 7) == 0;
    pier_delete_result_free(&d1);
    pier_delete_result_free(&d2);
    pier_delete_result_free(&d3);
    CHECK_OK(rc, st);
    CHECK_EQ(del1, 1);
    CHECK(prev_ok);
    CHECK_EQ(del2, 2);
    CHECK_EQ(del3, 0);
}

static void test_txn(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    const char *k = t_key("txn");
    /* Create-if-absent: version == 0 holds the first time only. */
    pier_compare absent = {.target = PIER_CMP_VERSION, .result = PIER_CMP_EQUAL, .key = k,
                           .key_len = strlen(k), .number = 0};
    pier_op put = {.type = PIER_OP_PUT, .key = k, .key_len = strlen(k), .value = "first", .value_len = 5};
    pier_op get = {.type = PIER_OP_RANGE, .key = k, .key_len = strlen(k)};
    pier_txn_result t1, t2, t3;
    memset(&t2, 0, sizeof t2); memset(&t3, 0, sizeof t3);
    int rc = pier_kv_txn(c, &absent, 1, &put, 1, &get, 1, &t1, &st);
    if (!rc) rc = pier_kv_txn(c, &absent, 1, &put, 1, &get, 1, &t2, &st);
    /* Compare-and-swap on the value. */
    pier_compare is_first = {.target = PIER_CMP_VALUE, .result = PIER_CMP_EQUAL, .key = k,
                             .key_len = strlen(k), .value = "first", .value_len = 5};
    pier_op ops[2] = {
        {.type = PIER_OP_PUT, .key = k, .key_len = strlen(k), .value = "second", .value_len = 6, .prev_kv = true},
        {.type = PIER_OP_DELETE, .key = "nope", .key_len = 4},
    };
    if (!rc) rc = pier_kv_txn(c, &is_first, 1, ops, 2, NULL, 0, &t3, &st);
    pier_client_free(c);
    bool s1 = t1.succeeded, s2 = t2.succeeded, s3 = t3.succeeded;
    int t1_put = t1.n_results == 1 && t1.results[0].type == PIER_OP_PUT;
    int t2_get = t2.n_results == 1 && t2.results[0].type == PIER_OP_RANGE && t2.results[0].n_kvs == 1 &&
                 t2.results[0].kvs[0].value_len == 5 && memcmp(t2.results[0].kvs[0].value, "first", 5) == 0;
    int t3_ok = t3.n_results == 2 && t3.results[0].n_kvs == 1 && t3.results[1].type == PIER_OP_DELETE &&
                t3.results[1].count == 0;
    int64_t r1 = t1.revision, r3 = t3.revision;
    pier_txn_result_free(&t1);
    pier_txn_result_free(&t2);
    pier_txn_result_free(&t3);
    CHECK_OK(rc, st);
    CHECK(s1);
    CHECK(!s2);
    CHECK(s3);
    CHECK(t1_put);
    CHECK(t2_get);
    CHECK(t3_ok);
    CHECK(r3 > r1);
}

static void test_errors_carry_etcd_status(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    int rc = pier_kv_put(c, "", 0, "x", 1, NULL, NULL, &st);
    pier_client_free(c);
    CHECK_CODE(rc, PIER_INVALID_ARGUMENT, st);
    CHECK_EQ(st.code, PIER_INVALID_ARGUMENT);
    CHECK(strcmp(st.message, "etcdserver: key is not provided") == 0);
}

static void test_compact(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    const char *k = t_key("compact");
    pier_put_result p1, p2;
    memset(&p2, 0, sizeof p2);
    int rc = pier_kv_put(c, k, strlen(k), "old", 3, NULL, &p1, &st);
    if (!rc) rc = pier_kv_put(c, k, strlen(k), "new", 3, NULL, &p2, &st);
    int64_t r1 = p1.revision, r2 = p2.revision;
    pier_put_result_free(&p1);
    pier_put_result_free(&p2);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    /* History still there before compaction. */
    pier_range_options o = {.revision = r1};
    pier_range_result r;
    rc = pier_kv_get(c, k, strlen(k), &o, &r, &st);
    int old_ok = rc == 0 && r.n_kvs == 1 && r.kvs[0].value_len == 3 && memcmp(r.kvs[0].value, "old", 3) == 0;
    pier_range_result_free(&r);
    int64_t hrev = 0;
    if (!rc) rc = pier_kv_compact(c, r2, true, &hrev, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    pier_status st2;
    int rc2 = pier_kv_get(c, k, strlen(k), &o, &r, &st2);
    pier_range_result_free(&r);
    pier_status st3;
    int rc3 = pier_kv_compact(c, r1, false, NULL, &st3);
    pier_client_free(c);
    CHECK(old_ok);
    CHECK(hrev >= r2);
    CHECK_CODE(rc2, PIER_OUT_OF_RANGE, st2);
    CHECK(strcmp(st2.message, "etcdserver: mvcc: required revision has been compacted") == 0);
    CHECK_CODE(rc3, PIER_OUT_OF_RANGE, st3);
}

static void test_unknown_method(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    int rc = pier__unary(c, "/no.such.Service/Method", &req.base,
                         &grpc__health__v1__health_check_response__descriptor, &resp, &st);
    /* The connection stays usable after a failed call. */
    int serving = 0;
    pier_status st2;
    int rc2 = pier_health_check(c, "", &serving, &st2);
    pier_client_free(c);
    CHECK_CODE(rc, PIER_UNIMPLEMENTED, st);
    CHECK(resp == NULL);
    CHECK_OK(rc2, st2);
}

static void test_deadline(void) {
    pier_client *c = t_connect();
    if (!c) return;
    /* A Watch stream never ends by itself, so as a "unary" call it can only time out. */
    pier_client_set_timeout(c, 300);
    pier_status st;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    int rc = pier__unary(c, "/etcdserverpb.Watch/Watch", &req.base,
                         &etcdserverpb__watch_response__descriptor, &resp, &st);
    pier_client_set_timeout(c, 10000);
    pier_status st2;
    int rc2 = pier_kv_get(c, "x", 1, NULL, NULL, &st2);
    pier_client_free(c);
    CHECK_CODE(rc, PIER_DEADLINE_EXCEEDED, st);
    CHECK_OK(rc2, st2);
}

static void test_many_calls_one_connection(void) {
    pier_client *c = t_connect();
    if (!c) return;
    pier_status st;
    int rc = 0;
    put_n(c, "many/", 50, &st, &rc);
    const char *p = t_key("many/");
    uint8_t end[256];
    size_t end_len = pier_prefix_end(p, strlen(p), end, sizeof end);
    pier_range_options o = {.range_end = end, .range_end_len = end_len, .count_only = true};
    pier_range_result r = {0};
    if (!rc) rc = pier_kv_get(c, p, strlen(p), &o, &r, &st);
    int64_t count = r.count;
    pier_range_result_free(&r);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK_EQ(count, 50);
}

static void test_large_value(void) {
    pier_client *c = t_connect();
    if (!c) return;
    /* Larger than a stream's flow-control window and several HTTP/2 frames. */
    size_t n = 1200 * 1024;
    uint8_t *v = malloc(n);
    for (size_t i = 0; i < n; i++) v[i] = (uint8_t)(i * 7);
    pier_status st;
    const char *k = t_key("large");
    int rc = pier_kv_put(c, k, strlen(k), v, n, NULL, NULL, &st);
    pier_range_result r = {0};
    if (!rc) rc = pier_kv_get(c, k, strlen(k), NULL, &r, &st);
    int same = r.n_kvs == 1 && r.kvs[0].value_len == n && memcmp(r.kvs[0].value, v, n) == 0;
    pier_range_result_free(&r);
    free(v);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK(same);
}

const t_case kv_cases[] = {
    {"health/check", test_health},
    {"kv/put_get", test_put_get},
    {"kv/get_missing", test_get_missing},
    {"kv/put_prev_kv_and_versions", test_put_prev_kv_and_versions},
    {"kv/range_prefix_limit_sort", test_range_prefix_limit_sort},
    {"kv/delete", test_delete},
    {"kv/txn", test_txn},
    {"kv/errors_carry_etcd_status", test_errors_carry_etcd_status},
    {"kv/compact", test_compact},
    {"kv/large_value", test_large_value},
    {"grpc/unknown_method", test_unknown_method},
    {"grpc/deadline", test_deadline},
    {"grpc/many_calls_one_connection", test_many_calls_one_connection},
    {NULL, NULL},
};
