/* Minimal test harness shared by the libpier test files: checks, registration, helpers. */
#ifndef PIER_TESTING_H
#define PIER_TESTING_H

#include "pier.h"

#include <stdio.h>
#include <string.h>

/* Set by a failing check; the runner reports it and moves to the next test. */
extern char t_failure[1024];
extern const char *t_endpoint;
/* A key prefix unique to this run, so runs against a shared server do not collide. */
extern char t_prefix[64];
/* Set by a test to mark itself skipped (e.g. the server lacks a service). */
extern char t_skip[256];

#define FAILF(...)                                                                          \
    do {                                                                                    \
        if (!t_failure[0]) {                                                                \
            int fn_ = snprintf(t_failure, sizeof t_failure, "%s:%d: ", __FILE__, __LINE__);\
            snprintf(t_failure + fn_, sizeof t_failure - (size_t)fn_, __VA_ARGS__);          \
        }                                                                                   \
        return;                                                                             \
    } while (0)

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) FAILF("check failed: %s", #cond);                                      \
    } while (0)

#define CHECK_EQ(a, b)                                                                      \
    do {                                                                                    \
        long long a_ = (long long)(a), b_ = (long long)(b);                                 \
        if (a_ != b_) FAILF("%s == %lld, expected %s == %lld", #a, a_, #b, b_);             \
    } while (0)

/* A call that must succeed; prints the status otherwise. */
#define CHECK_OK(rc, st)                                                                    \
    do {                                                                                    \
        int rc_ = (rc);                                                                     \
        if (rc_ != PIER_OK)                                                                 \
            FAILF("%s failed: %s (%d) %s", #rc, pier_code_name(rc_), rc_, (st).message);    \
    } while (0)

#define CHECK_CODE(rc, want, st)                                                            \
    do {                                                                                    \
        int rc_ = (rc);                                                                     \
        if (rc_ != (want))                                                                  \
            FAILF("%s returned %s (%s), expected %s", #rc, pier_code_name(rc_),             \
                  (st).message, pier_code_name(want));                                      \
    } while (0)

#define CHECK_BYTES(p, n, s)                                                                \
    do {                                                                                    \
        size_t n_ = (n);                                                                    \
        if (n_ != strlen(s) || memcmp((p), (s), n_) != 0)                                   \
            FAILF("%s is \"%.*s\", expected \"%s\"", #p, (int)n_, (const char *)(p), (s));  \
    } while (0)

/* A connected client with a 10 s call deadline, or NULL after recording a failure. */
pier_client *t_connect(void);
/* t_prefix + suffix, in a static rotating buffer. */
const char *t_key(const char *suffix);
/* Polls until *flag or timeout; returns *flag. */
bool t_poll_until(pier_client *c, const volatile bool *flag, int timeout_ms);
/* Polls until *counter >= want or timeout. */
bool t_poll_count(pier_client *c, const volatile int *counter, int want, int timeout_ms);

typedef struct t_case {
    const char *name;
    void (*fn)(void);
} t_case;

#endif
