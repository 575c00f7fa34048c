/* Example: producing keyed records with libpier's batching, idempotent producer. */
#include <pier.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC "example-events"

static long acked, failed;

static void on_ack(void *user, const pier_produce_ack *ack) {
    (void)user;
    if (ack->status.code == PIER_OK) acked++;
    else failed++;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s HOST:PORT [RECORDS]\n", argv[0]);
        return 2;
    }
    long n = argc > 2 ? atol(argv[2]) : 1000;
    pier_status st;
    pier_client_options opts = {.call_timeout_ms = 10000};
    pier_client *c = pier_client_new(argv[1], &opts, &st);
    if (!c) {
        fprintf(stderr, "connect: %s\n", st.message);
        return 1;
    }
    int rc = pier_log_create_topic(c, TOPIC, 3, NULL, 0, NULL, &st);
    if (rc != PIER_OK && rc != PIER_ALREADY_EXISTS) {
        fprintf(stderr, "create topic: %s: %s\n", pier_code_name(rc), st.message);
        pier_client_free(c);
        return 1;
    }
    /* Idempotent: the server drops a batch it already stored if it is ever sent twice. */
    pier_producer_options po = {.idempotent = true, .linger_ms = 5};
    pier_producer *p;
    if (pier_producer_new(c, TOPIC, &po, &p, &st)) {
        fprintf(stderr, "producer: %s: %s\n", pier_code_name(st.code), st.message);
        pier_client_free(c);
        return 1;
    }
    char key[32], value[64];
    for (long i = 0; i < n; i++) {
        snprintf(key, sizeof key, "user-%ld", i % 10);
        snprintf(value, sizeof value, "{\"event\":%ld}", i);
        pier_produce_record r = {.key = key, .key_len = strlen(key), .value = value,
                                 .value_len = strlen(value)};
        /* partition -1: chosen from the key, as Kafka's clients do */
        if (pier_producer_send(p, -1, &r, on_ack, NULL, &st)) break;
    }
    rc = pier_producer_flush(p, &st);
    printf("producer %lld: %ld records acknowledged, %ld failed\n",
           (long long)pier_producer_id(p), acked, failed);
    pier_producer_free(p);
    pier_client_free(c);
    if (rc) fprintf(stderr, "flush: %s: %s\n", pier_code_name(rc), st.message);
    return rc == PIER_OK && acked == n ? 0 : 1;
}
