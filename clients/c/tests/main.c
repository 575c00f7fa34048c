/* Test runner: runs every registered case against PIER_ENDPOINT and prints the tally. */
#define _POSIX_C_SOURCE 200809L
#include "testing.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

char t_failure[1024];
char t_skip[256];
const char *t_endpoint;
char t_prefix[64];

extern const t_case kv_cases[], watch_cases[], log_cases[], unit_cases[];

pier_client *t_connect(void) {
    pier_client_options o = {.call_timeout_ms = 10000};
    pier_status st;
    pier_client *c = pier_client_new(t_endpoint, &o, &st);
    if (!c)
        snprintf(t_failure, sizeof t_failure, "cannot connect to %s: %s", t_endpoint,
                 st.message);
    return c;
}

const char *t_key(const char *suffix) {
    static char bufs[8][256];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s%s", t_prefix, suffix);
    return b;
}

bool t_poll_until(pier_client *c, const volatile bool *flag, int timeout_ms) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!*flag) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long el = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (el >= timeout_ms) break;
        pier_client_poll(c, 50);
    }
    return *flag;
}

bool t_poll_count(pier_client *c, const volatile int *counter, int want, int timeout_ms) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (*counter < want) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long el = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (el >= timeout_ms) break;
        pier_client_poll(c, 50);
    }
    return *counter >= want;
}

int main(int argc, char **argv) {
    t_endpoint = getenv("PIER_ENDPOINT");
    if (!t_endpoint || !*t_endpoint) {
        fprintf(stderr, "set PIER_ENDPOINT=HOST:PORT\n");
        return 2;
    }
    snprintf(t_prefix, sizeof t_prefix, "libpier-test/%ld-%ld/", (long)getpid(),
             (long)time(NULL));
    const char *only = argc > 1 ? argv[1] : NULL; /* substring filter on test names */
    const t_case *suites[] = {unit_cases, kv_cases, watch_cases, log_cases};
    int passed = 0, failed = 0, skipped = 0;
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
        for (const t_case *tc = suites[s]; tc->name; tc++) {
            if (only && !strstr(tc->name, only)) continue;
            t_failure[0] = 0;
            t_skip[0] = 0;
            tc->fn();
            if (t_failure[0]) {
                printf("FAIL %s: %s\n", tc->name, t_failure);
                failed++;
            } else if (t_skip[0]) {
                printf("skip %s: %s\n", tc->name, t_skip);
                skipped++;
            } else {
                printf("ok   %s\n", tc->name);
                passed++;
            }
            fflush(stdout);
        }
    }
    if (skipped) printf("(%d skipped)\n", skipped);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
