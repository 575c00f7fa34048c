/* Example: watching a key prefix with libpier while the same connection writes to it. */
#include <pier.h>

#include <stdio.h>
#include <string.h>

static int events;

static void on_events(void *user, int64_t revision, const pier_event *ev, size_t n,
                      const pier_status *end) {
    (void)user;
    if (end) {
        fprintf(stderr, "watch ended: %s: %s\n", pier_code_name(end->code), end->message);
        return;
    }
    for (size_t i = 0; i < n; i++, events++)
        printf("revision %lld: %s %.*s%s%.*s\n", (long long)revision,
               ev[i].type == PIER_EVENT_PUT ? "PUT" : "DELETE", (int)ev[i].kv.key_len,
               ev[i].kv.key, ev[i].type == PIER_EVENT_PUT ? " = " : "",
               (int)ev[i].kv.value_len, ev[i].kv.value);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
        return 2;
    }
    pier_status st;
    pier_client_options opts = {.call_timeout_ms = 5000};
    pier_client *c = pier_client_new(argv[1], &opts, &st);
    if (!c) {
        fprintf(stderr, "connect: %s\n", st.message);
        return 1;
    }
    uint8_t end[64];
    size_t end_len = pier_prefix_end("watch-example/", 14, end, sizeof end);
    pier_watch_options wo = {.range_end = end, .range_end_len = end_len};
    pier_watch *w;
    if (pier_watch_start(c, "watch-example/", 14, &wo, on_events, NULL, &w, &st)) {
        fprintf(stderr, "watch: %s: %s\n", pier_code_name(st.code), st.message);
        pier_client_free(c);
        return 1;
    }
    /* Blocking calls also deliver the watch's events while they wait for their own replies. */
    int rc = 0;
    rc |= pier_kv_put(c, "watch-example/a", 15, "1", 1, NULL, NULL, &st);
    rc |= pier_kv_put(c, "watch-example/b", 15, "2", 1, NULL, NULL, &st);
    rc |= pier_kv_delete(c, "watch-example/a", 15, NULL, NULL, &st);
    rc |= pier_kv_delete(c, "watch-example/b", 15, NULL, NULL, &st);
    for (int i = 0; rc == 0 && events < 4 && i < 100; i++) pier_client_poll(c, 50);
    pier_watch_cancel(w);
    pier_client_free(c);
    if (rc || events < 4) {
        fprintf(stderr, "expected 4 events, saw %d (%s)\n", events, st.message);
        return 1;
    }
    return 0;
}
