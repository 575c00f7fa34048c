/* Private interfaces shared by libpier's sources: buffers, timers, gRPC calls on the client. */
#ifndef PIER_INTERNAL_H
#define PIER_INTERNAL_H

#include "pier.h"

#include <nghttp2/nghttp2.h>
#include <protobuf-c/protobuf-c.h>

/* Growable byte buffer; `off` marks bytes already consumed from the front. */
typedef struct pier_buf {
    uint8_t *data;
    size_t off, len, cap;
} pier_buf;

int pier__buf_append(pier_buf *b, const void *p, size_t n);
void pier__buf_consume(pier_buf *b, size_t n);
void pier__buf_free(pier_buf *b);
static inline size_t pier__buf_avail(const pier_buf *b) { return b->len - b->off; }

/* One-shot timers embedded in their owners (no allocation); the owner disarms before freeing. */
typedef struct pier_timer {
    int64_t at_ms;
    void (*fn)(void *arg);
    void *arg;
    bool armed;
    struct pier_timer *next;
} pier_timer;

void pier__timer_arm(pier_client *c, pier_timer *t, int64_t delay_ms);
void pier__timer_disarm(pier_client *c, pier_timer *t);
int64_t pier__now_ms(void);

typedef struct pier_call pier_call;

/* A whole received message. Returning non-zero cancels the call with PIER_INTERNAL (bad reply). */
typedef int (*pier_msg_fn)(void *user, const uint8_t *data, size_t len);
/* The call's final status; `call` may be queried (metadata) but is freed right after. */
typedef void (*pier_close_fn)(void *user, const pier_status *st, pier_call *call);

/* Starts a call on path "/pkg.Service/Method". timeout_ms 0: no deadline. Returns NULL with *st
 * on failure (no connection). Callbacks are invoked from the loop's dispatch only. */
pier_call *pier__call_start(pier_client *c, const char *path, int64_t timeout_ms,
                            pier_msg_fn on_msg, pier_close_fn on_close, void *user,
                            pier_status *st);
/* Frames and queues one message. */
int pier__call_send(pier_call *call, const ProtobufCMessage *msg);
/* Queues an already encoded message. */
int pier__call_send_packed(pier_call *call, const uint8_t *msg, size_t len);
/* Half-closes the sending side once queued messages are out. */
void pier__call_close_send(pier_call *call);
/* Detaches callbacks (none will run again) and resets the stream. The call is freed later. */
void pier__call_cancel(pier_call *call);
/* Detaches callbacks but lets the stream finish on its own (queued messages still go out). */
void pier__call_detach(pier_call *call);
/* A response header or trailer other than grpc-* and pseudo headers, or NULL. */
const char *pier__call_metadata(const pier_call *call, const char *name);

/* Blocking helpers (refuse to run inside a callback). */
int pier__check_blocking(pier_client *c, pier_status *st);
/* Runs the loop until *done. */
void pier__wait(pier_client *c, const bool *done);
/* One request, one response, unpacked with resp_desc into *resp (free with
 * protobuf_c_message_free_unpacked). */
int pier__unary(pier_client *c, const char *path, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                pier_status *st);
int64_t pier__client_timeout(const pier_client *c);

/* Fills *st (when non-NULL) and returns code. */
int pier__status(pier_status *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pier__status_copy(pier_status *dst, const pier_status *src);
void pier__status_ok(pier_status *st);

/* Decodes grpc-message's percent-encoding (malloc'ed, NUL-terminated). */
char *pier__percent_decode(const uint8_t *s, size_t n);

/* Converts a stored KeyValue into the public view (pointers into the message). */
struct Mvccpb__KeyValue;
void pier__kv_view(pier_kv *out, const struct Mvccpb__KeyValue *kv);

#endif
