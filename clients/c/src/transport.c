/* The connection: TCP socket, nghttp2 client session, gRPC calls as streams, poll(2) loop. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_RECV (64u << 20)
/* Large windows keep bulk fetches and produce acks from stalling on WINDOW_UPDATE round trips;
 * they still bound what the server may push before the application polls. */
#define STREAM_WINDOW (1 << 20)
#define CONN_WINDOW (16 << 20)

struct pier_call {
    pier_client *client;
    int32_t stream_id;
    pier_buf out;
    bool half_close;
    bool deferred;        /* the data provider returned DEFERRED and needs a resume */
    pier_buf in;
    int http_status;
    int grpc_code;        /* -1 until grpc-status arrives */
    char *grpc_message;
    pier_buf metadata;    /* "name\0value\0" pairs */
    bool closed;          /* no more input will arrive */
    uint32_t h2_error;
    bool has_local;       /* local_status overrides what the server said */
    pier_status local_status;
    int64_t deadline_ms;  /* 0: none */
    pier_msg_fn on_msg;
    pier_close_fn on_close;
    void *user;
    pier_call *next, *prev;
};

struct pier_client {
    char *host, *port, *authority;
    int fd;
    nghttp2_session *session;
    bool goaway;
    pier_call *calls;
    pier_timer *timers;
    int64_t call_timeout_ms;
    int64_t connect_timeout_ms;
    size_t max_recv;
    int in_callback;
    bool dispatching;
};

/* ---------------------------------------------------------------------------------------- */
/* small utilities */

int64_t pier__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pier__buf_append(pier_buf *b, const void *p, size_t n) {
    if (b->off > 0 && b->off == b->len) b->off = b->len = 0;
    if (b->len + n > b->cap) {
        /* Reclaim consumed space before growing. */
        if (b->off > 0) {
            memmove(b->data, b->data + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (b->len + n > b->cap) {
            size_t cap = b->cap ? b->cap : 256;
            while (cap < b->len + n) cap *= 2;
            uint8_t *d = realloc(b->data, cap);
            if (!d) return -1;
            b->data = d;
            b->cap = cap;
        }
    }
    if (n && p) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void pier__buf_consume(pier_buf *b, size_t n) {
    b->off += n;
    if (b->off >= b->len) b->off = b->len = 0;
}

void pier__buf_free(pier_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

int pier__status(pier_status *st, int code, const char *fmt, ...) {
    if (st) {
        st->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->message, sizeof st->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

void pier__status_copy(pier_status *dst, const pier_status *src) {
    if (dst && src && dst != src) *dst = *src;
}

void pier__status_ok(pier_status *st) {
    if (st) {
        st->code = PIER_OK;
        st->message[0] = 0;
    }
}

const char *pier_code_name(int code) {
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED"};
    if (code < 0 || code > 16) return "UNKNOWN_CODE";
    return names[code];
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* grpc-message is percent-encoded UTF-8; malformed escapes are kept literally, as gRPC does. */
char *pier__percent_decode(const uint8_t *s, size_t n) {
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n) {
            int h = hexval((char)s[i + 1]), l = hexval((char)s[i + 2]);
            if (h >= 0 && l >= 0) {
                out[j++] = (char)(h * 16 + l);
                i += 2;
                continue;
            }
        }
        out[j++] = (char)s[i];
    }
    out[j] = 0;
    return out;
}

/* ---------------------------------------------------------------------------------------- */
/* timers */

void pier__timer_arm(pier_client *c, pier_timer *t, int64_t delay_ms) {
    pier__timer_disarm(c, t);
    t->at_ms = pier__now_ms() + (delay_ms > 0 ? delay_ms : 0);
    t->armed = true;
    t->next = c->timers;
    c->timers = t;
}

void pier__timer_disarm(pier_client *c, pier_timer *t) {
    if (!t->armed) return;
    for (pier_timer **pp = &c->timers; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    t->armed = false;
    t->next = NULL;
}

static void fire_timers(pier_client *c) {
    int64_t now = pier__now_ms();
    /* Restart the scan after each firing: a timer callback may arm or disarm others. */
    for (;;) {
        pier_timer *due = NULL;
        for (pier_timer *t = c->timers; t; t = t->next)
            if (t->at_ms <= now) {
                due = t;
                break;
            }
        if (!due) return;
        pier__timer_disarm(c, due);
        c->in_callback++;
        due->fn(due->arg);
        c->in_callback--;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* calls */

static void call_local_close(pier_call *call, int code, const char *msg) {
    if (!call->has_local && !call->closed) {
        call->has_local = true;
        pier__status(&call->local_status, code, "%s", msg);
    }
    if (!call->closed) {
        pier_client *c = call->client;
        if (c->session && call->stream_id > 0) {
            nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id,
                                      NGHTTP2_CANCEL);
        }
        call->closed = true;
    }
}

static void call_free(pier_call *call) {
    pier_client *c = call->client;
    if (call->prev) call->prev->next = call->next;
    else c->calls = call->next;
    if (call->next) call->next->prev = call->prev;
    pier__buf_free(&call->out);
    pier__buf_free(&call->in);
    pier__buf_free(&call->metadata);
    free(call->grpc_message);
    free(call);
}

static int http_to_grpc(int http) {
    switch (http) {
    case 400: return PIER_INTERNAL;
    case 401: return PIER_UNAUTHENTICATED;
    case 403: return PIER_PERMISSION_DENIED;
    case 404: return PIER_UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return PIER_UNAVAILABLE;
    default: return PIER_UNKNOWN;
    }
}

static void call_final_status(pier_call *call, pier_status *st) {
    if (call->has_local) {
        *st = call->local_status;
    } else if (call->grpc_code >= 0) {
        pier__status(st, call->grpc_code, "%s", call->grpc_message ? call->grpc_message : "");
    } else if (call->h2_error != 0) {
        int code = PIER_INTERNAL;
        if (call->h2_error == NGHTTP2_REFUSED_STREAM) code = PIER_UNAVAILABLE;
        else if (call->h2_error == NGHTTP2_CANCEL) code = PIER_CANCELLED;
        else if (call->h2_error == NGHTTP2_ENHANCE_YOUR_CALM) code = PIER_RESOURCE_EXHAUSTED;
        else if (call->h2_error == NGHTTP2_INADEQUATE_SECURITY) code = PIER_PERMISSION_DENIED;
        pier__status(st, code, "stream reset by the server: %s",
                     nghttp2_http2_strerror(call->h2_error));
    } else if (call->http_status != 0 && call->http_status != 200) {
        pier__status(st, http_to_grpc(call->http_status), "HTTP status %d", call->http_status);
    } else {
        pier__status(st, PIER_INTERNAL, "the server ended the call without a grpc-status");
    }
    if (st->code == PIER_OK && pier__buf_avail(&call->in) > 0)
        pier__status(st, PIER_INTERNAL, "the call ended inside a message");
    /* A server that hits the same deadline first may report it as UNKNOWN or CANCELLED (etcd
     * does: "context deadline exceeded"); the caller should see one code for one cause. */
    if (st->code != PIER_OK && st->code != PIER_DEADLINE_EXCEEDED && call->deadline_ms > 0 &&
        pier__now_ms() + 50 >= call->deadline_ms) {
        char m[sizeof st->message];
        memcpy(m, st->message, sizeof m);
        pier__status(st, PIER_DEADLINE_EXCEEDED, "deadline exceeded (server: %.400s)", m);
    }
}

/* Delivers complete messages and final statuses. Only this function frees calls, so user
 * callbacks may cancel any call (their own included) while it iterates. */
static void dispatch(pier_client *c) {
    if (c->dispatching) return;
    c->dispatching = true;
    pier_call *call = c->calls;
    while (call) {
        pier_call *next;
        while (call->on_msg && pier__buf_avail(&call->in) >= 5) {
            const uint8_t *p = call->in.data + call->in.off;
            uint32_t len = ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) |
                           ((uint32_t)p[3] << 8) | p[4];
            if (p[0] != 0) {
                call_local_close(call, PIER_INTERNAL,
                                 "compressed message received, but no compression was offered");
                break;
            }
            if (len > c->max_recv) {
                char m[128];
                snprintf(m, sizeof m, "received message larger than max (%u vs. %zu)", len,
                         c->max_recv);
                call_local_close(call, PIER_RESOURCE_EXHAUSTED, m);
                break;
            }
            if (pier__buf_avail(&call->in) < 5 + (size_t)len) break;
            c->in_callback++;
            int rc = call->on_msg(call->user, p + 5, len);
            c->in_callback--;
            pier__buf_consume(&call->in, 5 + (size_t)len);
            if (rc != 0) call_local_close(call, PIER_INTERNAL, "could not decode the reply");
        }
        next = call->next;
        if (call->closed) {
            if (call->on_close) {
                pier_status st;
                call_final_status(call, &st);
                pier_close_fn fn = call->on_close;
                call->on_close = NULL;
                call->on_msg = NULL;
                c->in_callback++;
                fn(call->user, &st, call);
                c->in_callback--;
            }
            next = call->next;
            call_free(call);
        }
        call = next;
    }
    c->dispatching = false;
}

/* ---------------------------------------------------------------------------------------- */
/* nghttp2 callbacks */

/* Calls are found by stream id rather than through nghttp2's stream user data: a call may be
 * freed while its stream is still queued inside nghttp2 (not yet opened), where the user data
 * could not be cleared. A client has few concurrent calls, so a list scan is cheap. */
static pier_call *find_call(pier_client *c, int32_t stream_id) {
    for (pier_call *call = c->calls; call; call = call->next)
        if (call->stream_id == stream_id) return call->closed ? NULL : call;
    return NULL;
}

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
                       void *user_data) {
    (void)s; (void)flags;
    pier_client *c = user_data;
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return NGHTTP2_ERR_WOULDBLOCK;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data) {
    (void)flags; (void)s;
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    pier_call *call = find_call(user_data, frame->hd.stream_id);
    if (!call) return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int v = 0;
        for (size_t i = 0; i < valuelen; i++) v = v * 10 + (value[i] - '0');
        call->http_status = v;
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        int v = 0;
        for (size_t i = 0; i < valuelen && i < 6; i++) {
            if (value[i] < '0' || value[i] > '9') { v = PIER_UNKNOWN; break; }
            v = v * 10 + (value[i] - '0');
        }
        call->grpc_code = v;
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        free(call->grpc_message);
        call->grpc_message = pier__percent_decode(value, valuelen);
    } else if (namelen > 0 && name[0] != ':' && !(namelen > 5 && memcmp(name, "grpc-", 5) == 0)) {
        static const uint8_t zero = 0;
        pier__buf_append(&call->metadata, name, namelen);
        pier__buf_append(&call->metadata, &zero, 1);
        pier__buf_append(&call->metadata, value, valuelen);
        pier__buf_append(&call->metadata, &zero, 1);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data) {
    (void)flags; (void)s;
    pier_call *call = find_call(user_data, stream_id);
    if (!call) return 0;
    if (pier__buf_append(&call->in, data, len) != 0)
        call_local_close(call, PIER_RESOURCE_EXHAUSTED, "out of memory buffering a reply");
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code,
                           void *user_data) {
    (void)s;
    pier_call *call = find_call(user_data, stream_id);
    if (!call) return 0;
    call->closed = true;
    call->h2_error = error_code;
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *user_data) {
    (void)s;
    pier_client *c = user_data;
    if (frame->hd.type == NGHTTP2_GOAWAY) c->goaway = true;
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
    (void)source; (void)s;
    pier_call *call = find_call(user_data, stream_id);
    if (!call) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    size_t avail = pier__buf_avail(&call->out);
    if (avail == 0) {
        if (call->half_close) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        call->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? avail : length;
    memcpy(buf, call->out.data + call->out.off, n);
    pier__buf_consume(&call->out, n);
    if (n == avail && call->half_close) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---------------------------------------------------------------------------------------- */
/* connection */

/* Ends every open call with UNAVAILABLE and drops the session; calls are finalized by the next
 * dispatch. */
static void conn_down(pier_client *c, const char *why) {
    for (pier_call *call = c->calls; call; call = call->next) {
        if (!call->closed) {
            if (!call->has_local) {
                call->has_local = true;
                pier__status(&call->local_status, PIER_UNAVAILABLE, "connection lost: %s", why);
            }
            call->closed = true;
        }
    }
    if (c->session) {
        nghttp2_session_del(c->session);
        c->session = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->goaway = false;
}

static int tcp_connect(pier_client *c, pier_status *st) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(c->host, c->port, &hints, &res);
    if (rc != 0)
        return pier__status(st, PIER_UNAVAILABLE, "cannot resolve %s: %s", c->host,
                            gai_strerror(rc));
    int err = 0;
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) { err = errno; continue; }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        if (errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int n = poll(&pfd, 1, (int)c->connect_timeout_ms);
            if (n == 1) {
                socklen_t sl = sizeof err;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl);
                if (err == 0) break;
            } else {
                err = n == 0 ? ETIMEDOUT : errno;
            }
        } else {
            err = errno;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return pier__status(st, PIER_UNAVAILABLE, "cannot connect to %s: %s", c->authority,
                            strerror(err));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    return PIER_OK;
}

static int conn_up(pier_client *c, pier_status *st) {
    int rc = tcp_connect(c, st);
    if (rc) return rc;
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    rc = nghttp2_session_client_new(&c->session, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0) {
        close(c->fd);
        c->fd = -1;
        return pier__status(st, PIER_INTERNAL, "nghttp2: %s", nghttp2_strerror(rc));
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 1 << 16},
    };
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    if (nghttp2_session_send(c->session) != 0) {
        conn_down(c, "cannot send the connection preface");
        return pier__status(st, PIER_UNAVAILABLE, "cannot send the HTTP/2 preface to %s",
                            c->authority);
    }
    return PIER_OK;
}

static int parse_endpoint(pier_client *c, const char *endpoint, pier_status *st) {
    if (!endpoint || !*endpoint)
        return pier__status(st, PIER_INVALID_ARGUMENT, "empty endpoint");
    if (strncmp(endpoint, "http://", 7) == 0) endpoint += 7;
    size_t n = strlen(endpoint);
    while (n > 0 && endpoint[n - 1] == '/') n--;
    const char *colon = NULL;
    const char *host = endpoint;
    size_t hostlen;
    if (endpoint[0] == '[') {
        const char *close_br = memchr(endpoint, ']', n);
        if (!close_br || close_br + 1 >= endpoint + n || close_br[1] != ':')
            return pier__status(st, PIER_INVALID_ARGUMENT, "bad endpoint \"%s\" (want [ADDR]:PORT)",
                                endpoint);
        host = endpoint + 1;
        hostlen = (size_t)(close_br - host);
        colon = close_br + 1;
    } else {
        for (size_t i = n; i > 0; i--)
            if (endpoint[i - 1] == ':') { colon = endpoint + i - 1; break; }
        if (!colon)
            return pier__status(st, PIER_INVALID_ARGUMENT, "bad endpoint \"%s\" (want HOST:PORT)",
                                endpoint);
        hostlen = (size_t)(colon - endpoint);
    }
    size_t portlen = (size_t)(endpoint + n - colon - 1);
    if (hostlen == 0 || portlen == 0)
        return pier__status(st, PIER_INVALID_ARGUMENT, "bad endpoint \"%s\" (want HOST:PORT)",
                            endpoint);
    c->host = strndup(host, hostlen);
    c->port = strndup(colon + 1, portlen);
    c->authority = strndup(endpoint, n);
    if (!c->host || !c->port || !c->authority)
        return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    return PIER_OK;
}

pier_client *pier_client_new(const char *endpoint, const pier_client_options *opts,
                             pier_status *st) {
    pier_client *c = calloc(1, sizeof *c);
    if (!c) {
        pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    c->fd = -1;
    c->connect_timeout_ms = 5000;
    c->max_recv = DEFAULT_MAX_RECV;
    if (opts) {
        c->call_timeout_ms = opts->call_timeout_ms;
        if (opts->connect_timeout_ms > 0) c->connect_timeout_ms = opts->connect_timeout_ms;
        if (opts->max_recv_message_bytes > 0) c->max_recv = opts->max_recv_message_bytes;
    }
    if (parse_endpoint(c, endpoint, st) != PIER_OK || conn_up(c, st) != PIER_OK) {
        free(c->host);
        free(c->port);
        free(c->authority);
        free(c);
        return NULL;
    }
    pier__status_ok(st);
    return c;
}

void pier_client_free(pier_client *c) {
    if (!c) return;
    for (pier_call *call = c->calls; call; call = call->next) {
        call->on_msg = NULL;
        call->on_close = NULL;
    }
    if (c->session) {
        /* Best effort, without blocking: push out what is queued (a group leave, say). */
        nghttp2_session_send(c->session);
        nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
        nghttp2_session_send(c->session);
    }
    conn_down(c, "client closed");
    while (c->calls) call_free(c->calls);
    free(c->host);
    free(c->port);
    free(c->authority);
    free(c);
}

void pier_client_set_timeout(pier_client *c, int64_t timeout_ms) {
    c->call_timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
}

int64_t pier__client_timeout(const pier_client *c) { return c->call_timeout_ms; }

int pier_client_fd(const pier_client *c) { return c->fd; }

static void read_in(pier_client *c);

/* A session that received GOAWAY takes no new streams; once its streams are done, start over.
 * A peer that closed the connection while we were idle is noticed here (a zero-timeout poll),
 * so the next call reconnects instead of failing on the dead socket. */
static int ensure_connected(pier_client *c, pier_status *st) {
    if (c->fd >= 0) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) > 0) read_in(c);
    }
    if (c->session && c->goaway && c->calls == NULL) conn_down(c, "server sent GOAWAY");
    if (c->session && c->goaway)
        return pier__status(st, PIER_UNAVAILABLE,
                            "the server is shutting the connection down (GOAWAY)");
    if (!c->session) return conn_up(c, st);
    return PIER_OK;
}

int pier_client_reconnect(pier_client *c, pier_status *st) {
    if (c->session && !c->goaway) return PIER_OK;
    int rc = ensure_connected(c, st);
    if (rc == PIER_OK) pier__status_ok(st);
    dispatch(c);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* event loop */

static void flush_out(pier_client *c) {
    if (!c->session) return;
    int rc = nghttp2_session_send(c->session);
    if (rc != 0) conn_down(c, nghttp2_strerror(rc));
}

static void read_in(pier_client *c) {
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) conn_down(c, strerror(errno));
            return;
        }
        if (n == 0) {
            conn_down(c, "the server closed the connection");
            return;
        }
        ssize_t used = nghttp2_session_mem_recv(c->session, buf, (size_t)n);
        if (used < 0) {
            conn_down(c, nghttp2_strerror((int)used));
            return;
        }
        if ((size_t)n < sizeof buf) return;
    }
}

static void expire_deadlines(pier_client *c, int64_t now) {
    for (pier_call *call = c->calls; call; call = call->next)
        if (!call->closed && call->deadline_ms > 0 && call->deadline_ms <= now)
            call_local_close(call, PIER_DEADLINE_EXCEEDED, "deadline exceeded");
}

static int64_t next_wakeup(const pier_client *c) {
    int64_t at = INT64_MAX;
    for (const pier_timer *t = c->timers; t; t = t->next)
        if (t->at_ms < at) at = t->at_ms;
    for (const pier_call *call = c->calls; call; call = call->next) {
        if (call->closed) return 0; /* a final status waits to be delivered */
        if (call->deadline_ms > 0 && call->deadline_ms < at) at = call->deadline_ms;
    }
    return at;
}

static int loop_once(pier_client *c, int timeout_ms) {
    flush_out(c);
    dispatch(c);
    int64_t now = pier__now_ms();
    int64_t wake = next_wakeup(c);
    int wait = timeout_ms;
    if (wake != INT64_MAX) {
        int64_t d = wake > now ? wake - now : 0;
        if (wait < 0 || d < wait) wait = (int)(d > 1000000 ? 1000000 : d);
    }
    if (c->fd >= 0) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (c->session && nghttp2_session_want_write(c->session)) pfd.events |= POLLOUT;
        int n = poll(&pfd, 1, wait);
        if (n > 0) {
            if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) read_in(c);
            flush_out(c);
        }
        if (c->session && !nghttp2_session_want_read(c->session) &&
            !nghttp2_session_want_write(c->session))
            conn_down(c, "the session ended");
    } else {
        /* Disconnected: only timers can fire. Still honour a finite timeout, so a caller's
         * poll loop does not spin while the server is away. */
        if (wait < 0) return PIER_UNAVAILABLE;
        if (wait > 0) poll(NULL, 0, wait);
    }
    expire_deadlines(c, pier__now_ms());
    fire_timers(c);
    dispatch(c);
    flush_out(c);
    return c->fd >= 0 ? PIER_OK : PIER_UNAVAILABLE;
}

int pier_client_poll(pier_client *c, int timeout_ms) {
    if (c->in_callback) return PIER_FAILED_PRECONDITION;
    return loop_once(c, timeout_ms);
}

int pier_client_run_for(pier_client *c, int64_t duration_ms) {
    if (c->in_callback) return PIER_FAILED_PRECONDITION;
    int64_t end = pier__now_ms() + duration_ms;
    int rc = PIER_OK;
    for (int64_t left = duration_ms; left > 0; left = end - pier__now_ms())
        rc = loop_once(c, (int)(left > 1000000 ? 1000000 : left));
    return rc;
}

int pier__check_blocking(pier_client *c, pier_status *st) {
    if (c->in_callback)
        return pier__status(st, PIER_FAILED_PRECONDITION,
                            "blocking libpier call made from inside a callback");
    return PIER_OK;
}

void pier__wait(pier_client *c, const bool *done) {
    while (!*done) {
        if (loop_once(c, -1) == PIER_UNAVAILABLE && c->fd < 0 && !*done && c->calls == NULL &&
            c->timers == NULL)
            return; /* nothing left that could complete the wait */
    }
}

/* ---------------------------------------------------------------------------------------- */
/* calls */

static void grpc_timeout_value(int64_t ms, char *out, size_t cap) {
    /* At most 8 digits are allowed; fall back to coarser units for long deadlines. */
    if (ms < 100000000) snprintf(out, cap, "%lldm", (long long)ms);
    else if (ms / 1000 < 100000000) snprintf(out, cap, "%lldS", (long long)(ms / 1000));
    else snprintf(out, cap, "%lldM", (long long)(ms / 60000));
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

pier_call *pier__call_start(pier_client *c, const char *path, int64_t timeout_ms,
                            pier_msg_fn on_msg, pier_close_fn on_close, void *user,
                            pier_status *st) {
    if (ensure_connected(c, st) != PIER_OK) return NULL;
    pier_call *call = calloc(1, sizeof *call);
    if (!call) {
        pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    call->client = c;
    call->grpc_code = -1;
    call->on_msg = on_msg;
    call->on_close = on_close;
    call->user = user;
    char tbuf[32];
    nghttp2_nv nva[8] = {
        NV(":method", "POST"),
        NV(":scheme", "http"),
        NV(":path", path),
        NV(":authority", c->authority),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("user-agent", "libpier/" PIER_VERSION),
    };
    size_t nnv = 7;
    if (timeout_ms > 0) {
        call->deadline_ms = pier__now_ms() + timeout_ms;
        grpc_timeout_value(timeout_ms, tbuf, sizeof tbuf);
        nghttp2_nv t = NV("grpc-timeout", tbuf);
        nva[nnv++] = t;
    }
    nghttp2_data_provider prd = {.source.ptr = NULL, .read_callback = read_body};
    int32_t id = nghttp2_submit_request(c->session, NULL, nva, nnv, &prd, NULL);
    if (id < 0) {
        free(call);
        pier__status(st, PIER_UNAVAILABLE, "cannot start a call: %s", nghttp2_strerror(id));
        return NULL;
    }
    call->stream_id = id;
    call->next = c->calls;
    if (c->calls) c->calls->prev = call;
    c->calls = call;
    return call;
}

static void resume(pier_call *call) {
    if (call->deferred && !call->closed && call->client->session) {
        call->deferred = false;
        nghttp2_session_resume_data(call->client->session, call->stream_id);
    }
}

int pier__call_send(pier_call *call, const ProtobufCMessage *msg) {
    if (call->closed || call->half_close) return PIER_FAILED_PRECONDITION;
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > 0xffffffffu) return PIER_RESOURCE_EXHAUSTED;
    uint8_t hdr[5] = {0, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    if (pier__buf_append(&call->out, hdr, 5) != 0) return PIER_RESOURCE_EXHAUSTED;
    size_t at = call->out.len;
    if (pier__buf_append(&call->out, NULL, n) != 0) return PIER_RESOURCE_EXHAUSTED;
    protobuf_c_message_pack(msg, call->out.data + at);
    resume(call);
    return PIER_OK;
}

int pier__call_send_packed(pier_call *call, const uint8_t *msg, size_t n) {
    if (call->closed || call->half_close) return PIER_FAILED_PRECONDITION;
    if (n > 0xffffffffu) return PIER_RESOURCE_EXHAUSTED;
    uint8_t hdr[5] = {0, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    if (pier__buf_append(&call->out, hdr, 5) != 0 || pier__buf_append(&call->out, msg, n) != 0)
        return PIER_RESOURCE_EXHAUSTED;
    resume(call);
    return PIER_OK;
}

void pier__call_close_send(pier_call *call) {
    if (call->half_close) return;
    call->half_close = true;
    resume(call);
}

void pier__call_cancel(pier_call *call) {
    call->on_msg = NULL;
    call->on_close = NULL;
    call_local_close(call, PIER_CANCELLED, "cancelled");
}

void pier__call_detach(pier_call *call) {
    call->on_msg = NULL;
    call->on_close = NULL;
}

const char *pier__call_metadata(const pier_call *call, const char *name) {
    const uint8_t *p = call->metadata.data + call->metadata.off;
    const uint8_t *end = call->metadata.data + call->metadata.len;
    while (p < end) {
        const char *k = (const char *)p;
        const char *v = k + strlen(k) + 1;
        if (strcasecmp(k, name) == 0) return v;
        p = (const uint8_t *)(v + strlen(v) + 1);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* unary */

typedef struct unary_state {
    const ProtobufCMessageDescriptor *desc;
    ProtobufCMessage *resp;
    int nmsg;
    bool done;
    pier_status st;
} unary_state;

static int unary_msg(void *user, const uint8_t *data, size_t len) {
    unary_state *u = user;
    if (++u->nmsg > 1) return 0; /* reported at close */
    u->resp = protobuf_c_message_unpack(u->desc, NULL, len, data);
    return u->resp ? 0 : -1;
}

static void unary_close(void *user, const pier_status *st, pier_call *call) {
    (void)call;
    unary_state *u = user;
    u->st = *st;
    if (st->code == PIER_OK && u->nmsg != 1)
        pier__status(&u->st, PIER_INTERNAL, "expected one reply message, got %d", u->nmsg);
    u->done = true;
}

int pier__unary(pier_client *c, const char *path, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                pier_status *st) {
    *resp = NULL;
    if (pier__check_blocking(c, st)) return PIER_FAILED_PRECONDITION;
    unary_state u = {.desc = resp_desc};
    pier_call *call = pier__call_start(c, path, c->call_timeout_ms, unary_msg, unary_close, &u, st);
    if (!call) return st ? st->code : PIER_UNAVAILABLE;
    int rc = pier__call_send(call, req);
    if (rc != PIER_OK) {
        pier__call_cancel(call);
        dispatch(c);
        return pier__status(st, rc, "cannot encode the request");
    }
    pier__call_close_send(call);
    pier__wait(c, &u.done);
    if (!u.done) pier__status(&u.st, PIER_UNAVAILABLE, "connection lost");
    if (u.st.code != PIER_OK) {
        if (u.resp) protobuf_c_message_free_unpacked(u.resp, NULL);
        pier__status_copy(st, &u.st);
        return u.st.code;
    }
    *resp = u.resp;
    pier__status_ok(st);
    return PIER_OK;
}
