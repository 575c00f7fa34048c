/* Restart check: an idempotent producer keeps going while the server is killed and restarted;
 * every record must be acknowledged exactly once and stored exactly once, and streams open at
 * the crash (a watch, a subscription) must end with UNAVAILABLE. */
#define _GNU_SOURCE
#include <pier.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long acked, failed, duplicates;
static pier_status first_failure;

static void on_ack(void *user, const pier_produce_ack *a) {
    (void)user;
    if (a->status.code != PIER_OK) {
        if (!failed) first_failure = a->status;
        failed++;
    } else {
        acked++;
        duplicates += a->duplicate;
    }
}

static int watch_end = -1, sub_end = -1;

static void on_watch(void *user, int64_t rev, const pier_event *ev, size_t n,
                     const pier_status *end) {
    (void)user; (void)rev; (void)ev; (void)n;
    if (end) watch_end = end->code;
}

static void on_records(void *user, const pier_record *r, size_t n, int64_t hw,
                       const pier_status *end) {
    (void)user; (void)r; (void)n; (void)hw;
    if (end) sub_end = end->code;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s HOST:PORT RECORDS\n", argv[0]);
        return 2;
    }
    long total = atol(argv[2]);
    char topic[64];
    snprintf(topic, sizeof topic, "restart-check-%ld-%ld", (long)getpid(), (long)time(NULL));
    pier_status st;
    /* The deadline is also the producer's budget for resending across the restart. */
    pier_client_options o = {.call_timeout_ms = 30000};
    pier_client *c = pier_client_new(argv[1], &o, &st);
    if (!c) {
        fprintf(stderr, "connect: %s\n", st.message);
        return 1;
    }
    int rc = pier_log_create_topic(c, topic, 1, NULL, 0, NULL, &st);
    if (!rc) rc = pier_kv_put(c, "restart-check/key", 17, "before", 6, NULL, NULL, &st);
    pier_producer_options po = {.idempotent = true, .batch_max_records = 200};
    pier_producer *p = NULL;
    if (!rc) rc = pier_producer_new(c, topic, &po, &p, &st);
    pier_watch *w = NULL;
    pier_subscription *sub = NULL;
    if (!rc) rc = pier_watch_start(c, "restart-check/", 14, NULL, on_watch, NULL, &w, &st);
    if (!rc) rc = pier_log_subscribe(c, topic, 0, PIER_START_EARLIEST, 0, on_records, NULL, &sub, &st);
    if (rc) {
        fprintf(stderr, "setup: %s: %s\n", pier_code_name(rc), st.message);
        pier_client_free(c);
        return 1;
    }
    for (long i = 0; i < total && rc == PIER_OK; i++) {
        char v[32];
        snprintf(v, sizeof v, "%ld", i);
        pier_produce_record r = {.value = v, .value_len = strlen(v)};
        rc = pier_producer_send(p, 0, &r, on_ack, NULL, &st);
        if (i % 1000 == 999) {
            /* No flush: requests stay in flight across the restart and must be resent. */
            pier_client_run_for(c, 1); /* keep the run long enough for the restart to land mid-stream */
        }
    }
    if (rc == PIER_OK) rc = pier_producer_flush(p, &st);
    pier_producer_free(p);
    /* On a fast machine the records may all be in before the crash: wait for it (the streams
     * end), so the checks below read what the restarted server recovered. */
    for (int i = 0; i < 400 && (watch_end < 0 || sub_end < 0); i++) pier_client_poll(c, 50);
    int64_t end = -1;
    pier_range_result got = {0};
    /* The server may still be starting again: retry while it is unreachable (bounded). */
    int rc2 = PIER_UNAVAILABLE;
    for (int i = 0; i < 100 && rc2 == PIER_UNAVAILABLE; i++) {
        rc2 = pier_log_list_offset(c, topic, 0, PIER_OFFSET_LATEST, 0, &end, &st);
        if (rc2 == PIER_UNAVAILABLE) pier_client_run_for(c, 100);
    }
    if (!rc2) rc2 = pier_kv_get(c, "restart-check/key", 17, NULL, &got, &st);
    int kv_ok = got.n_kvs == 1 && got.kvs[0].value_len == 6 && memcmp(got.kvs[0].value, "before", 6) == 0;
    pier_range_result_free(&got);
    pier_watch_cancel(w);
    pier_subscription_cancel(sub);
    pier_client_free(c);
    printf("restart check: %ld acknowledged (%ld resent duplicates), %ld failed, log end %lld, "
           "watch ended %s, subscription ended %s\n",
           acked, duplicates, failed, (long long)end, watch_end < 0 ? "-" : pier_code_name(watch_end),
           sub_end < 0 ? "-" : pier_code_name(sub_end));
    if (failed) fprintf(stderr, "first failure: %s\n", first_failure.message);
    if (rc || rc2) fprintf(stderr, "%s: %s\n", pier_code_name(rc ? rc : rc2), st.message);
    return rc == PIER_OK && rc2 == PIER_OK && failed == 0 && acked == total && end == total &&
                   kv_ok && watch_end == PIER_UNAVAILABLE && sub_end == PIER_UNAVAILABLE
               ? 0
               : 1;
}
