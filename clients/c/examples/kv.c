/* Example: the KV store with libpier: put, get, compare-and-swap, prefix range, lease, delete. */
#include <pier.h>

#include <stdio.h>
#include <string.h>

static int fail(const char *what, const pier_status *st) {
    fprintf(stderr, "%s: %s: %s\n", what, pier_code_name(st->code), st->message);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
        return 2;
    }
    pier_status st;
    pier_client_options opts = {.call_timeout_ms = 5000};
    pier_client *c = pier_client_new(argv[1], &opts, &st);
    if (!c) return fail("connect", &st);
    int rc = 1;

    int serving = 0;
    if (pier_health_check(c, "", &serving, &st)) { fail("health", &st); goto out; }
    printf("health: %s\n", serving == PIER_HEALTH_SERVING ? "SERVING" : "not serving");

    pier_put_result put;
    if (pier_kv_put(c, "example/greeting", 16, "hello", 5, NULL, &put, &st)) { fail("put", &st); goto out; }
    printf("put example/greeting at revision %lld\n", (long long)put.revision);
    pier_put_result_free(&put);

    pier_range_result got;
    if (pier_kv_get(c, "example/greeting", 16, NULL, &got, &st)) { fail("get", &st); goto out; }
    for (size_t i = 0; i < got.n_kvs; i++)
        printf("get %.*s = %.*s (version %lld)\n", (int)got.kvs[i].key_len, got.kvs[i].key,
               (int)got.kvs[i].value_len, got.kvs[i].value, (long long)got.kvs[i].version);
    pier_range_result_free(&got);

    /* Compare-and-swap: replace the value only if it is still "hello". */
    pier_compare cmp = {.target = PIER_CMP_VALUE, .result = PIER_CMP_EQUAL,
                        .key = "example/greeting", .key_len = 16, .value = "hello", .value_len = 5};
    pier_op swap = {.type = PIER_OP_PUT, .key = "example/greeting", .key_len = 16,
                    .value = "bonjour", .value_len = 7};
    pier_txn_result txn;
    if (pier_kv_txn(c, &cmp, 1, &swap, 1, NULL, 0, &txn, &st)) { fail("txn", &st); goto out; }
    printf("compare-and-swap %s\n", txn.succeeded ? "succeeded" : "failed");
    pier_txn_result_free(&txn);

    /* A key tied to a lease disappears when the lease is revoked (or expires). */
    int64_t lease = 0;
    if (pier_lease_grant(c, 30, 0, &lease, NULL, &st)) { fail("lease grant", &st); goto out; }
    pier_put_options with_lease = {.lease = lease};
    if (pier_kv_put(c, "example/session", 15, "alive", 5, &with_lease, NULL, &st)) { fail("put", &st); goto out; }

    uint8_t end[64];
    size_t end_len = pier_prefix_end("example/", 8, end, sizeof end);
    pier_range_options prefix = {.range_end = end, .range_end_len = end_len};
    pier_range_result all;
    if (pier_kv_get(c, "example/", 8, &prefix, &all, &st)) { fail("range", &st); goto out; }
    printf("prefix example/ holds %lld keys\n", (long long)all.count);
    pier_range_result_free(&all);

    if (pier_lease_revoke(c, lease, &st)) { fail("lease revoke", &st); goto out; }
    pier_delete_options del = {.range_end = end, .range_end_len = end_len};
    pier_delete_result d;
    if (pier_kv_delete(c, "example/", 8, &del, &d, &st)) { fail("delete", &st); goto out; }
    printf("deleted %lld keys (the leased key was already gone)\n", (long long)d.deleted);
    pier_delete_result_free(&d);
    rc = 0;
out:
    pier_client_free(c);
    return rc;
}
