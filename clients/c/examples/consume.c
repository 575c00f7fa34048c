/* Example: a consumer group member with libpier: join, read assigned partitions, commit. */
#include <pier.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC "example-events"
#define GROUP "example-consumers"

typedef struct partition_reader {
    pier_subscription *sub;
    int32_t partition;
    int64_t end;       /* high watermark when we started: read up to here, then stop */
    int64_t next;      /* next offset to consume */
    long records;
} partition_reader;

static void on_records(void *user, const pier_record *r, size_t n, int64_t hw,
                       const pier_status *end) {
    (void)hw;
    partition_reader *pr = user;
    if (end) {
        fprintf(stderr, "partition %d: %s\n", pr->partition, end->message);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (pr->records < 3)
            printf("partition %d offset %lld: %.*s = %.*s\n", r[i].partition,
                   (long long)r[i].offset, (int)r[i].key_len, r[i].key, (int)r[i].value_len,
                   r[i].value);
        pr->records++;
        pr->next = r[i].offset + 1;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
        return 2;
    }
    pier_status st;
    pier_client_options opts = {.call_timeout_ms = 10000};
    pier_client *c = pier_client_new(argv[1], &opts, &st);
    if (!c) {
        fprintf(stderr, "connect: %s\n", st.message);
        return 1;
    }
    /* Run on its own, the example makes a topic with a few records to read. */
    int rc = pier_log_create_topic(c, TOPIC, 3, NULL, 0, NULL, &st);
    if (rc == PIER_OK) {
        pier_produce_record r = {.key = "user-0", .key_len = 6, .value = "{}", .value_len = 2};
        for (int32_t part = 0; part < 3 && rc == PIER_OK; part++)
            rc = pier_log_produce(c, TOPIC, part, &r, 1, NULL, &st);
    } else if (rc == PIER_ALREADY_EXISTS) {
        rc = PIER_OK;
    }
    pier_group_member *m = NULL;
    const char *topics[] = {TOPIC};
    if (rc == PIER_OK) rc = pier_group_join(c, GROUP, topics, 1, NULL, NULL, NULL, &m, &st);
    if (rc != PIER_OK) {
        fprintf(stderr, "%s: %s\n", pier_code_name(rc), st.message);
        pier_client_free(c);
        return 1;
    }
    size_t n;
    const pier_topic_partition *assigned = pier_group_assignment(m, &n);
    printf("member %s, generation %lld, %zu partitions\n", pier_group_member_id(m),
           (long long)pier_group_generation(m), n);
    partition_reader *readers = calloc(n ? n : 1, sizeof *readers);
    for (size_t i = 0; i < n && rc == PIER_OK; i++) {
        partition_reader *pr = &readers[i];
        pr->partition = assigned[i].partition;
        /* Resume from the group's committed offset, or from the beginning. */
        int64_t from = -1;
        rc = pier_log_committed_offset(c, GROUP, TOPIC, pr->partition, &from, &st);
        if (rc == PIER_OK)
            rc = pier_log_list_offset(c, TOPIC, pr->partition, PIER_OFFSET_LATEST, 0, &pr->end, &st);
        if (rc == PIER_OK && from < 0)
            rc = pier_log_list_offset(c, TOPIC, pr->partition, PIER_OFFSET_EARLIEST, 0, &from, &st);
        pr->next = from;
        if (rc == PIER_OK)
            rc = pier_log_subscribe(c, TOPIC, pr->partition, PIER_START_OFFSET, from, on_records,
                                    pr, &pr->sub, &st);
    }
    /* Consume until every partition reached the end it had when we started (bounded wait). */
    for (int tries = 0; rc == PIER_OK && tries < 200; tries++) {
        bool caught_up = true;
        for (size_t i = 0; i < n; i++) caught_up &= readers[i].next >= readers[i].end;
        if (caught_up) break;
        pier_client_poll(c, 50);
    }
    long total = 0;
    pier_topic_partition_offset *commits = calloc(n ? n : 1, sizeof *commits);
    for (size_t i = 0; i < n; i++) {
        total += readers[i].records;
        commits[i] = (pier_topic_partition_offset){.topic = TOPIC,
                                                   .partition = readers[i].partition,
                                                   .offset = readers[i].next};
        pier_subscription_cancel(readers[i].sub);
    }
    if (rc == PIER_OK) rc = pier_group_commit(m, commits, n, &st);
    if (rc == PIER_OK) printf("consumed %ld records, offsets committed\n", total);
    else fprintf(stderr, "%s: %s\n", pier_code_name(rc), st.message);
    free(commits);
    free(readers);
    pier_group_leave(m);
    pier_client_free(c);
    return rc == PIER_OK ? 0 : 1;
}
