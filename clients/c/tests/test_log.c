/* Tests of the log API: topics, produce (unary, batched, idempotent), fetch, subscribe, groups. */
#define _GNU_SOURCE
#include "testing.h"

#include "internal.h"
#include "pier/log/v1/log.pb-c.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* A fresh topic name per test; the server is shared with other runs. */
static const char *topic_name(const char *what) {
    static char bufs[4][128];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "libpier-test-%ld-%ld-%s", (long)getpid(), (long)time(NULL), what);
    return b;
}

/* Connects, and marks the test skipped when the server has no log service (plain etcd). */
static pier_client *log_connect(void) {
    pier_client *c = t_connect();
    if (!c) return NULL;
    pier_status st;
    pier_topic_list l;
    int rc = pier_log_list_topics(c, &l, &st);
    if (rc == PIER_UNIMPLEMENTED) {
        snprintf(t_skip, sizeof t_skip, "the server has no pier.log.v1.Log service");
        pier_client_free(c);
        return NULL;
    }
    if (rc == PIER_OK) pier_topic_list_free(&l);
    return c;
}

static int make_topic(pier_client *c, const char *topic, int partitions, pier_status *st) {
    return pier_log_create_topic(c, topic, partitions, NULL, 0, NULL, st);
}

static void test_topic_admin(void) {
    pier_client *c = log_connect();
    if (!c) return;
    pier_status st;
    const char *t = topic_name("admin");
    pier_config_entry cfg[] = {{"retention.ms", "3600000"}};
    pier_topic_info created;
    int rc = pier_log_create_topic(c, t, 3, cfg, 1, &created, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    size_t created_parts = created.n_partitions;
    pier_topic_info_free(&created);

    pier_topic_info d;
    rc = pier_log_describe_topic(c, t, &d, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    size_t parts = d.n_partitions;
    int64_t end0 = parts ? d.partitions[0].log_end_offset : -1;
    const char *retention = NULL, *policy = NULL;
    for (size_t i = 0; i < d.n_configs; i++) {
        if (strcmp(d.configs[i].key, "retention.ms") == 0) retention = d.configs[i].value;
        if (strcmp(d.configs[i].key, "cleanup.policy") == 0) policy = d.configs[i].value;
    }
    int retention_ok = retention && strcmp(retention, "3600000") == 0;
    int policy_ok = policy && strcmp(policy, "delete") == 0;
    int name_ok = d.topic && strcmp(d.topic, t) == 0;
    pier_topic_info_free(&d);

    pier_topic_list l;
    rc = pier_log_list_topics(c, &l, &st);
    int listed = 0;
    for (size_t i = 0; rc == 0 && i < l.n_topics; i++)
        if (strcmp(l.topics[i].topic, t) == 0 && l.topics[i].partitions == 3) listed = 1;
    pier_topic_list_free(&l);

    pier_status st_dup, st_bad, st_gone, st_cfg;
    int rc_dup = make_topic(c, t, 3, &st_dup);
    int rc_bad = make_topic(c, "bad/name", 1, &st_bad);
    pier_config_entry bad_cfg[] = {{"no.such.config", "1"}};
    int rc_cfg = pier_log_create_topic(c, topic_name("badcfg"), 1, bad_cfg, 1, NULL, &st_cfg);
    if (!rc) rc = pier_log_delete_topic(c, t, &st);
    pier_topic_info gone;
    int rc_gone = pier_log_describe_topic(c, t, &gone, &st_gone);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK_EQ(created_parts, 3);
    CHECK_EQ(parts, 3);
    CHECK_EQ(end0, 0);
    CHECK(name_ok);
    CHECK(retention_ok);
    CHECK(policy_ok);
    CHECK(listed);
    CHECK_CODE(rc_dup, PIER_ALREADY_EXISTS, st_dup);
    CHECK_CODE(rc_bad, PIER_INVALID_ARGUMENT, st_bad);
    CHECK_CODE(rc_cfg, PIER_INVALID_ARGUMENT, st_cfg);
    CHECK_CODE(rc_gone, PIER_NOT_FOUND, st_gone);
    CHECK(st_dup.message[0] != 0); /* every error carries a message */
}

static void test_produce_fetch(void) {
    pier_client *c = log_connect();
    if (!c) return;
    pier_status st;
    const char *t = topic_name("pf");
    int rc = make_topic(c, t, 1, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    pier_record_header h = {(const uint8_t *)"trace", 5, (const uint8_t *)"abc", 3};
    pier_produce_record recs[3] = {
        {.key = "k0", .key_len = 2, .value = "v0", .value_len = 2, .headers = &h, .n_headers = 1},
        {.key = "k1", .key_len = 2, .value = "v1", .value_len = 2, .timestamp_ms = 1700000000000},
        {.value = "v2", .value_len = 2},
    };
    int64_t base = -1, base2 = -1;
    rc = pier_log_produce(c, t, 0, recs, 3, &base, &st);
    if (!rc) rc = pier_log_produce(c, t, 0, recs, 1, &base2, &st);
    pier_fetch_result f = {0}, f1 = {0};
    if (!rc) rc = pier_log_fetch(c, t, 0, 0, 0, 0, &f, &st);
    if (!rc) rc = pier_log_fetch(c, t, 0, 1, 0, 0, &f1, &st);
    pier_status st_range, st_wait;
    pier_fetch_result fr = {0}, fw = {0};
    int rc_range = pier_log_fetch(c, t, 0, 100, 0, 0, &fr, &st_range);
    /* At the end of the log, a fetch waits max_wait_ms and returns nothing. */
    int rc_wait = pier_log_fetch(c, t, 0, 4, 0, 200, &fw, &st_wait);
    size_t fw_n = fw.n_records;
    pier_fetch_result_free(&fr);
    pier_fetch_result_free(&fw);
    pier_client_free(c);

    size_t n = f.n_records, n1 = f1.n_records;
    int64_t hw = f.high_watermark, next = f.next_offset, first1 = n1 ? f1.records[0].offset : -1;
    int rec0 = n >= 3 && f.records[0].offset == 0 && f.records[0].key_len == 2 &&
               memcmp(f.records[0].key, "k0", 2) == 0 && f.records[0].value_len == 2 &&
               memcmp(f.records[0].value, "v0", 2) == 0 && f.records[0].n_headers == 1 &&
               f.records[0].headers[0].value_len == 3 &&
               memcmp(f.records[0].headers[0].value, "abc", 3) == 0;
    int rec1 = n >= 3 && f.records[1].timestamp_ms == 1700000000000 && f.records[1].offset == 1;
    int rec2 = n >= 3 && f.records[2].key_len == 0 && f.records[2].offset == 2 &&
               f.records[2].timestamp_ms > 0;
    pier_fetch_result_free(&f);
    pier_fetch_result_free(&f1);
    CHECK_OK(rc, st);
    CHECK_EQ(base, 0);
    CHECK_EQ(base2, 3);
    CHECK_EQ(n, 4);
    CHECK_EQ(hw, 4);
    CHECK_EQ(next, 4);
    CHECK(rec0);
    CHECK(rec1);
    CHECK(rec2);
    CHECK_EQ(n1, 3);
    CHECK_EQ(first1, 1);
    CHECK_CODE(rc_range, PIER_OUT_OF_RANGE, st_range);
    CHECK_OK(rc_wait, st_wait);
    CHECK_EQ(fw_n, 0);
}

typedef struct ack_tally {
    int acks, errors, duplicates;
    int64_t last_offset[8];
    int out_of_order;
    pier_status first_error;
} ack_tally;

static void on_ack(void *user, const pier_produce_ack *a) {
    ack_tally *t = user;
    t->acks++;
    if (a->status.code != PIER_OK) {
        if (!t->errors) t->first_error = a->status;
        t->errors++;
        return;
    }
    if (a->duplicate) t->duplicates++;
    if (a->partition >= 0 && a->partition < 8) {
        /* Offsets per partition must rise by one in send order. */
        if (t->last_offset[a->partition] + 1 != a->offset) t->out_of_order++;
        t->last_offset[a->partition] = a->offset;
    }
}

static void test_producer_batching(void) {
    pier_client *c = log_connect();
    if (!c) return;
    pier_status st;
    const char *t = topic_name("batch");
    int rc = make_topic(c, t, 4, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    pier_producer_options o = {.batch_max_records = 64, .max_in_flight = 4};
    pier_producer *p;
    rc = pier_producer_new(c, t, &o, &p, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    ack_tally tally;
    memset(&tally, 0, sizeof tally);
    for (int i = 0; i < 8; i++) tally.last_offset[i] = -1;
    enum { N = 2000 };
    char key[32], val[64];
    for (int i = 0; i < N && rc == 0; i++) {
        snprintf(key, sizeof key, "key-%d", i % 50);
        snprintf(val, sizeof val, "value-%d", i);
        pier_produce_record r = {.key = key, .key_len = strlen(key), .value = val, .value_len = strlen(val)};
        rc = pier_producer_send(p, -1, &r, on_ack, &tally, &st);
    }
    if (!rc) rc = pier_producer_flush(p, &st);
    size_t pending = pier_producer_pending(p);
    pier_producer_free(p);
    /* The same key always lands on the same partition. */
    int64_t total = 0;
    pier_topic_info d = {0};
    if (!rc) rc = pier_log_describe_topic(c, t, &d, &st);
    int used = 0;
    for (size_t i = 0; i < d.n_partitions; i++) {
        total += d.partitions[i].log_end_offset;
        used += d.partitions[i].log_end_offset > 0;
    }
    pier_topic_info_free(&d);
    /* key-0 is sent 40 times: all to one partition, so a fetch there finds all 40. */
    int key0 = 0;
    for (int32_t part = 0; rc == 0 && part < 4; part++) {
        pier_fetch_result f;
        int64_t off = 0;
        int found = 0;
        while (rc == 0) {
            rc = pier_log_fetch(c, t, part, off, 0, 0, &f, &st);
            if (rc) break;
            for (size_t i = 0; i < f.n_records; i++)
                if (f.records[i].key_len == 5 && memcmp(f.records[i].key, "key-0", 5) == 0) found++;
            size_t got = f.n_records;
            off = f.next_offset;
            int64_t hw = f.high_watermark;
            pier_fetch_result_free(&f);
            if (got == 0 || off >= hw) break;
        }
        if (found) key0 = key0 ? -1 : found; /* -1: key-0 seen on two partitions */
    }
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK_EQ(tally.acks, N);
    CHECK_EQ(tally.errors, 0);
    CHECK_EQ(tally.out_of_order, 0);
    CHECK_EQ(pending, 0);
    CHECK_EQ(total, N);
    CHECK(used >= 2);
    CHECK_EQ(key0, 40);
}

typedef struct part_ack {
    int32_t partition;
    bool done;
} part_ack;

static void on_part_ack(void *user, const pier_produce_ack *a) {
    part_ack *pa = user;
    pa->partition = a->status.code == PIER_OK ? a->partition : -1;
    pa->done = true;
}

/* The producer's client-side key partitioning agrees with the server's (both Kafka murmur2). */
static void test_key_partitioning_matches_server(void) {
    pier_client *c = log_connect();
    if (!c) return;
    pier_status st;
    const char *t = topic_name("keys");
    int rc = make_topic(c, t, 5, &st);
    pier_producer *p = NULL;
    if (!rc) rc = pier_producer_new(c, t, NULL, &p, &st);
    enum { K = 20 };
    part_ack client[K];
    memset(client, 0, sizeof client);
    char key[32];
    for (int i = 0; i < K && rc == 0; i++) {
        snprintf(key, sizeof key, "customer-%d", i * 7919);
        pier_produce_record r = {.key = key, .key_len = strlen(key), .value = "c", .value_len = 1};
        rc = pier_producer_send(p, -1, &r, on_part_ack, &client[i], &st);
    }
    if (!rc) rc = pier_producer_flush(p, &st);
    if (p) pier_producer_free(p);
    int mismatches = 0;
    for (int i = 0; i < K && rc == 0; i++) {
        snprintf(key, sizeof key, "customer-%d", i * 7919);
        pier_produce_record r = {.key = key, .key_len = strlen(key), .value = "s", .value_len = 1};
        int64_t base = -1;
        rc = pier_log_produce(c, t, -1, &r, 1, &base, &st);
        /* Find where the server put it: the partition whose latest record is this one. */
        int32_t found = -1;
        for (int32_t part = 0; rc == 0 && part < 5; part++) {
            pier_fetch_result f;
            if (pier_log_fetch(c, t, part, base, 0, 0, &f, &st) == PIER_OK) {
                for (size_t j = 0; j < f.n_records; j++)
                    if (f.records[j].offset == base && f.records[j].value_len == 1 &&
                        f.records[j].value[0] == 's' && f.records[j].key_len == strlen(key) &&
                        memcmp(f.records[j].key, key, strlen(key)) == 0)
                        found = part;
                pier_fetch_result_free(&f);
            }
        }
        if (found != client[i].partition) mismatches++;
    }
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK_EQ(mismatches, 0);
}

static void test_idempotent_producer(void) {
    pier_client *c = log_connect();
    if (!c) return;
    pier_status st;
    const char *t = topic_name("idem");
    int rc = make_topic(c, t, 1, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    pier_producer_options o = {.idempotent = true};
    pier_producer *p;
    rc = pier_producer_new(c, t, &o, &p, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    int64_t pid = pier_producer_id(p);
    ack_tally tally;
    memset(&tally, 0, sizeof tally);
    for (int i = 0; i < 8; i++) tally.last_offset[i] = -1;
    for (int i = 0; i < 10 && rc == 0; i++) {
        pier_produce_record r = {.value = "x", .value_len = 1};
        rc = pier_producer_send(p, 0, &r, on_ack, &tally, &st);
    }
    if (!rc) rc = pier_producer_flush(p, &st);
    pier_producer_free(p);

    /* Sending the same batch again (same producer, sequences 10..14, as a retry after a lost
     * reply would) is recognised as a duplicate and not stored twice. */
    Pier__Log__V1__Record rec = PIER__LOG__V1__RECORD__INIT;
    rec.value.data = (uint8_t *)"y";
    rec.value.len = 1;
    Pier__Log__V1__Record *recp[5] = {&rec, &rec, &rec, &rec, &rec};
    Pier__Log__V1__ProduceBatch b = PIER__LOG__V1__PRODUCE_BATCH__INIT;
    b.partition = 0;
    b.base_sequence = 10;
    b.n_records = 5;
    b.records = recp;
    Pier__Log__V1__ProduceBatch *bp = &b;
    Pier__Log__V1__ProduceRequest req = PIER__LOG__V1__PRODUCE_REQUEST__INIT;
    req.topic = (char *)t;
    req.n_batches = 1;
    req.batches = &bp;
    req.producer_id = pid;
    ProtobufCMessage *m = NULL;
    int first_dup = -1;
    if (!rc) rc = pier__unary(c, "/pier.log.v1.Log/Produce", &req.base,
                              &pier__log__v1__produce_response__descriptor, &m, &st);
    if (m) {
        Pier__Log__V1__ProduceResponse *r = (Pier__Log__V1__ProduceResponse *)m;
        if (r->n_results == 1) first_dup = r->results[0]->duplicate;
        protobuf_c_message_free_unpacked(m, NULL);
        m = NULL;
    }
    if (!rc) rc = pier__unary(c, "/pier.log.v1.Log/Produce", &req.base,
                              &pier__log__v1__produce_response__descriptor, &m, &st);
    int dup = 0;
    int64_t dup_offset = -1;
    if (m) {
        Pier__Log__V1__ProduceResponse *r = (Pier__Log__V1__ProduceResponse *)m;
        if (r->n_results == 1) {
            dup = r->results[0]->duplicate;
            dup_offset = r->results[0]->base_offset;
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    /* A gap in the sequence is refused. */
    b.base_sequence = 50;
    pier_status st_gap;
    m = NULL;
    int rc_gap = pier__unary(c, "/pier.log.v1.Log/Produce", &req.base,
                             &pier__log__v1__produce_response__descriptor, &m, &st_gap);
    int gap_code = -1;
    if (m) {
        Pier__Log__V1__ProduceResponse *r = (Pier__Log__V1__ProduceResponse *)m;
        if (r->n_results == 1) gap_code = r->results[0]->error_code;
        protobuf_c_message_free_unpacked(m, NULL);
    } else {
        gap_code = rc_gap;
    }
    int64_t end = -1;
    if (!rc) rc = pier_log_list_offset(c, t, 0, PIER_OFFSET_LATEST, 0, &end, &st);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK(pid > 0);
    CHECK_EQ(tally.acks, 10);
    CHECK_EQ(tally.errors, 0);
    CHECK_EQ(tally.last_offset[0], 9);
    CHECK_EQ(first_dup, 0);
    CHECK(dup);
    CHECK_EQ(dup_offset, 10);
    CHECK_EQ(gap_code, PIER_FAILED_PRECONDITION);
    CHECK_EQ(end, 15);
}

typedef struct sub_log {
    int n;
    int64_t next_expected;
    int gaps;
    char last[32];
    bool ended;
    int end_code;
} sub_log;

static void on_records(void *user, const pier_record *r, size_t n, int64_t hw,
                       const pier_status *end) {
    (void)hw;
    sub_log *l = user;
    if (end) {
        l->ended = true;
        l->end_code = end->code;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (l->next_expected >= 0 && r[i].offset != l->next_expected) l->gaps++;
        l->next_expected = r[i].offset + 1;
        snprintf(l->last, sizeof l->last, "%.*s", (int)r[i].value_len, r[i].value);
        l->n++;
    }
}

static void test_subscribe(void) {
    pier_client *c = log_connect();
    if (!c) return;
    pier_status st;
    const char *t = topic_name("sub");
    int rc = make_topic(c, t, 1, &st);
    pier_produce_record r0 = {.value = "before", .value_len = 6};
    if (!rc) rc = pier_log_produce(c, t, 0, &r0, 1, NULL, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    sub_log from_start = {.next_expected = 0}, from_latest = {.next_expected = -1},
            from_one = {.next_expected = 2};
    pier_subscription *s1, *s2, *s3;
    rc = pier_log_subscribe(c, t, 0, PIER_START_EARLIEST, 0, on_records, &from_start, &s1, &st);
    if (!rc) rc = pier_log_subscribe(c, t, 0, PIER_START_LATEST, 0, on_records, &from_latest, &s2, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    /* Let the latest subscription settle at offset 1 before producing more. */
    t_poll_count(c, &from_start.n, 1, 5000);
    pier_client_run_for(c, 300);
    char v[32];
    for (int i = 0; i < 5 && rc == 0; i++) {
        snprintf(v, sizeof v, "live-%d", i);
        pier_produce_record r = {.value = v, .value_len = strlen(v)};
        rc = pier_log_produce(c, t, 0, &r, 1, NULL, &st);
    }
    if (!rc) rc = pier_log_subscribe(c, t, 0, PIER_START_OFFSET, 2, on_records, &from_one, &s3, &st);
    t_poll_count(c, &from_start.n, 6, 5000);
    t_poll_count(c, &from_latest.n, 5, 5000);
    t_poll_count(c, &from_one.n, 4, 5000);
    int64_t next = pier_subscription_next_offset(s1);
    pier_subscription_cancel(s1);
    pier_subscription_cancel(s2);
    if (!rc) pier_subscription_cancel(s3);
    /* Out of range: the stream ends with OUT_OF_RANGE. */
    sub_log bad = {.next_expected = -1};
    pier_subscription *s4 = NULL;
    pier_status st4;
    int rc4 = pier_log_subscribe(c, t, 0, PIER_START_OFFSET, 1000, on_records, &bad, &s4, &st4);
    if (!rc4) {
        t_poll_until(c, &bad.ended, 5000);
        pier_subscription_cancel(s4);
    }
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK_EQ(from_start.n, 6);
    CHECK_EQ(from_start.gaps, 0);
    CHECK(strcmp(from_start.last, "live-4") == 0);
    CHECK_EQ(from_latest.n, 5);
    CHECK_EQ(from_one.n, 4);
    CHECK_EQ(from_one.gaps, 0);
    CHECK_EQ(next, 6);
    CHECK_OK(rc4, st4);
    CHECK(bad.ended);
    CHECK_EQ(bad.end_code, PIER_OUT_OF_RANGE);
}

static void test_list_offsets_and_deadline(void) {
    pier_client *c = log_connect();
    if (!c) return;
    pier_status st;
    const char *t = topic_name("offsets");
    int rc = make_topic(c, t, 1, &st);
    pier_produce_record rs[3] = {{.value = "a", .value_len = 1}, {.value = "b", .value_len = 1},
                                 {.value = "c", .value_len = 1}};
    if (!rc) rc = pier_log_produce(c, t, 0, rs, 3, NULL, &st);
    int64_t earliest = -1, latest = -1;
    if (!rc) rc = pier_log_list_offset(c, t, 0, PIER_OFFSET_EARLIEST, 0, &earliest, &st);
    if (!rc) rc = pier_log_list_offset(c, t, 0, PIER_OFFSET_LATEST, 0, &latest, &st);
    /* A long poll longer than the call's deadline: the server answers empty just before the
     * deadline (or the client reports DEADLINE_EXCEEDED); it never fails otherwise. */
    pier_client_set_timeout(c, 300);
    pier_fetch_result f = {0};
    pier_status st_dl;
    int rc_dl = pier_log_fetch(c, t, 0, 3, 0, 5000, &f, &st_dl);
    size_t dl_records = f.n_records;
    pier_fetch_result_free(&f);
    if (rc_dl == PIER_DEADLINE_EXCEEDED) rc_dl = PIER_OK;
    pier_client_set_timeout(c, 10000);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK_EQ(earliest, 0);
    CHECK_EQ(latest, 3);
    CHECK_OK(rc_dl, st_dl);
    CHECK_EQ(dl_records, 0);
}

typedef struct assign_log {
    int calls;
    int64_t generation;
    size_t n;
    bool ended;
} assign_log;

static void on_assign(void *user, int64_t gen, const pier_topic_partition *a, size_t n,
                      const pier_status *end) {
    (void)a;
    assign_log *l = user;
    if (end) {
        l->ended = true;
        return;
    }
    l->calls++;
    l->generation = gen;
    l->n = n;
}

static void test_consumer_group(void) {
    pier_client *c = log_connect();
    if (!c) return;
    pier_status st;
    const char *t = topic_name("group");
    char group[160];
    snprintf(group, sizeof group, "%s-g", t);
    int rc = make_topic(c, t, 2, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    const char *topics[] = {t};
    assign_log a1 = {0}, a2 = {0};
    pier_group_member *m1 = NULL, *m2 = NULL;
    pier_group_options go = {.client_id = "libpier-test", .session_timeout_ms = 10000};
    rc = pier_group_join(c, group, topics, 1, &go, on_assign, &a1, &m1, &st);
    if (rc) { pier_client_free(c); CHECK_OK(rc, st); }
    size_t n1_alone = a1.n;
    int64_t gen1 = pier_group_generation(m1);
    int has_member_id = pier_group_member_id(m1)[0] != 0;
    pier_topic_partition_offset off = {.topic = t, .partition = 0, .offset = 42, .metadata = "m"};
    rc = pier_group_commit(m1, &off, 1, &st);
    int64_t committed = -2;
    if (!rc) rc = pier_log_committed_offset(c, group, t, 0, &committed, &st);
    int64_t uncommitted = -2;
    if (!rc) rc = pier_log_committed_offset(c, group, t, 1, &uncommitted, &st);
    /* A commit with a stale generation is fenced. */
    pier_status st_fenced;
    int rc_fenced = pier_log_commit_offsets(c, group, pier_group_member_id(m1), gen1 + 100, &off, 1,
                                            &st_fenced);
    /* A second member triggers a rebalance: each ends with one partition. */
    if (!rc) rc = pier_group_join(c, group, topics, 1, &go, on_assign, &a2, &m2, &st);
    for (int i = 0; rc == 0 && i < 100 && !(a1.n == 1 && a2.n == 1); i++) pier_client_poll(c, 50);
    size_t n1_shared = a1.n, n2_shared = a2.n;
    int64_t gen_shared = a1.generation;
    if (m2) pier_group_leave(m2);
    for (int i = 0; rc == 0 && i < 100 && a1.n != 2; i++) pier_client_poll(c, 50);
    size_t n1_after = a1.n;
    pier_group_leave(m1);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK(has_member_id);
    CHECK_EQ(n1_alone, 2);
    CHECK_EQ(committed, 42);
    CHECK_EQ(uncommitted, -1);
    CHECK_CODE(rc_fenced, PIER_FAILED_PRECONDITION, st_fenced);
    CHECK_EQ(n1_shared, 1);
    CHECK_EQ(n2_shared, 1);
    CHECK(gen_shared > gen1);
    CHECK_EQ(n1_after, 2);
}

static void test_commit_without_members(void) {
    pier_client *c = log_connect();
    if (!c) return;
    pier_status st;
    const char *t = topic_name("nomember");
    char group[160];
    snprintf(group, sizeof group, "%s-g", t);
    int rc = make_topic(c, t, 1, &st);
    pier_topic_partition_offset off = {.topic = t, .partition = 0, .offset = 7};
    if (!rc) rc = pier_log_commit_offsets(c, group, NULL, -1, &off, 1, &st);
    pier_offset_list l = {0};
    if (!rc) rc = pier_log_fetch_offsets(c, group, NULL, &l, &st);
    int found = 0;
    for (size_t i = 0; i < l.n_offsets; i++)
        if (strcmp(l.offsets[i].topic, t) == 0 && l.offsets[i].offset == 7) found = 1;
    pier_offset_list_free(&l);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK(found);
}

static void test_alter_config_and_group_listing(void) {
    pier_client *c = log_connect();
    if (!c) return;
    pier_status st;
    const char *t = topic_name("alter");
    char group[160];
    snprintf(group, sizeof group, "%s-g", t);
    int rc = make_topic(c, t, 2, &st);
    pier_config_entry set[] = {{"retention.ms", "1000"}};
    pier_topic_info after = {0};
    if (!rc) rc = pier_log_alter_topic_config(c, t, set, 1, NULL, 0, &after, &st);
    const char *ret = NULL;
    for (size_t i = 0; i < after.n_configs; i++)
        if (strcmp(after.configs[i].key, "retention.ms") == 0) ret = after.configs[i].value;
    int set_ok = ret && strcmp(ret, "1000") == 0;
    pier_topic_info_free(&after);
    const char *rm[] = {"retention.ms"};
    pier_topic_info reset = {0};
    if (!rc) rc = pier_log_alter_topic_config(c, t, NULL, 0, rm, 1, &reset, &st);
    ret = NULL;
    for (size_t i = 0; i < reset.n_configs; i++)
        if (strcmp(reset.configs[i].key, "retention.ms") == 0) ret = reset.configs[i].value;
    int reset_ok = ret && strcmp(ret, "604800000") == 0;
    pier_topic_info_free(&reset);

    const char *topics[] = {t};
    pier_group_member *m = NULL;
    pier_group_options go = {.client_id = "lister"};
    if (!rc) rc = pier_group_join(c, group, topics, 1, &go, NULL, NULL, &m, &st);
    pier_group_list gl = {0};
    if (!rc) rc = pier_log_list_groups(c, &gl, &st);
    int listed = 0;
    for (size_t i = 0; i < gl.n_groups; i++)
        if (strcmp(gl.groups[i].group_id, group) == 0 && gl.groups[i].members == 1) listed = 1;
    pier_group_list_free(&gl);
    pier_group_info gi = {0};
    if (!rc) rc = pier_log_describe_group(c, group, &gi, &st);
    int described = gi.n_members == 1 && strcmp(gi.members[0].client_id, "lister") == 0 &&
                    gi.members[0].n_assignment == 2 && gi.n_topics == 1 &&
                    strcmp(gi.topics[0], t) == 0 && strcmp(gi.state, "Stable") == 0;
    pier_group_info_free(&gi);
    if (m) pier_group_leave(m);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK(set_ok);
    CHECK(reset_ok);
    CHECK(listed);
    CHECK(described);
}

static void test_work_queue(void) {
    pier_client *c = log_connect();
    if (!c) return;
    pier_status st;
    const char *t = topic_name("queue");
    int rc = make_topic(c, t, 1, &st);
    pier_produce_record rs[2] = {{.value = "job-1", .value_len = 5}, {.value = "job-2", .value_len = 5}};
    if (!rc) rc = pier_log_produce(c, t, 0, rs, 2, NULL, &st);
    pier_receive_result r1 = {0}, r2 = {0}, r3 = {0};
    if (!rc) rc = pier_queue_receive(c, t, "workers", 1, 30000, 1000, &r1, &st);
    if (!rc) rc = pier_queue_receive(c, t, "workers", 10, 30000, 1000, &r2, &st);
    size_t n1 = r1.n_records, n2 = r2.n_records;
    int32_t attempt1 = n1 ? r1.records[0].attempt : 0;
    int v1 = n1 == 1 && r1.records[0].record.value_len == 5 && memcmp(r1.records[0].record.value, "job-1", 5) == 0;
    pier_lease_ref ack = {0}, nack = {0};
    if (n1) ack = (pier_lease_ref){r1.records[0].record.partition, r1.records[0].record.offset, r1.records[0].lease_id};
    if (n2) nack = (pier_lease_ref){r2.records[0].record.partition, r2.records[0].record.offset, r2.records[0].lease_id};
    int32_t acked = -1, nacked = -1;
    if (!rc && n1) rc = pier_queue_ack(c, t, "workers", &ack, 1, &acked, &st);
    if (!rc && n2) rc = pier_queue_nack(c, t, "workers", &nack, 1, 0, &nacked, &st);
    /* The nacked record comes back, on its second attempt. */
    if (!rc) rc = pier_queue_receive(c, t, "workers", 10, 30000, 2000, &r3, &st);
    int redelivered = r3.n_records == 1 && r3.records[0].attempt == 2 &&
                      memcmp(r3.records[0].record.value, "job-2", 5) == 0;
    pier_receive_result_free(&r1);
    pier_receive_result_free(&r2);
    pier_receive_result_free(&r3);
    pier_client_free(c);
    CHECK_OK(rc, st);
    CHECK_EQ(n1, 1);
    CHECK(v1);
    CHECK_EQ(attempt1, 1);
    CHECK_EQ(n2, 1);
    CHECK_EQ(acked, 1);
    CHECK_EQ(nacked, 1);
    CHECK(redelivered);
}

const t_case log_cases[] = {
    {"log/topic_admin", test_topic_admin},
    {"log/produce_fetch", test_produce_fetch},
    {"log/producer_batching", test_producer_batching},
    {"log/idempotent_producer", test_idempotent_producer},
    {"log/key_partitioning_matches_server", test_key_partitioning_matches_server},
    {"log/subscribe", test_subscribe},
    {"log/list_offsets_and_deadline", test_list_offsets_and_deadline},
    {"log/consumer_group", test_consumer_group},
    {"log/commit_without_members", test_commit_without_members},
    {"log/alter_config_and_group_listing", test_alter_config_and_group_listing},
    {"log/work_queue", test_work_queue},
    {NULL, NULL},
};
