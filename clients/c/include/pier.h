/* libpier: the C client for Pier's log and etcd-v3-compatible KV store over gRPC (h2c). */
#ifndef PIER_H
#define PIER_H

/*
 * Overview
 * --------
 * A pier_client owns one TCP connection carrying one HTTP/2 session. Every call (unary or
 * streaming) is one HTTP/2 stream on it, so any number of watches, subscriptions, producers and
 * blocking calls share the connection.
 *
 * Threading model: a client and everything created from it (watches, lease keepers,
 * producers, subscriptions, group members) may be used by ONE thread at a time. The library
 * starts no threads. Progress happens only inside library calls: every blocking call runs the
 * client's event loop (poll(2)) until its own reply arrives, and meanwhile delivers messages
 * of the other open streams to their callbacks. Applications with only streaming work call
 * pier_client_poll() in their own loop (or wait on pier_client_fd() and then call it with 0).
 * Callbacks run on the thread inside pier_client_poll() or a blocking call. They may call the
 * non-blocking functions (pier_producer_send, pier_watch_cancel, ..., marked "non-blocking"),
 * but a blocking call made from inside a callback fails with PIER_FAILED_PRECONDITION, and
 * pier_client_free must not be called from one. Different clients are independent: threads
 * may each use their own client at the same time.
 *
 * Errors: functions return a gRPC status code (PIER_OK == 0 on success) and, when the caller
 * passes a pier_status, fill it with the code and the server's message (percent-decoded from
 * grpc-message). Local failures use the codes gRPC itself uses: connection problems are
 * PIER_UNAVAILABLE, expired deadlines PIER_DEADLINE_EXCEEDED, malformed replies PIER_INTERNAL.
 *
 * Connection loss: streams open at that moment end with PIER_UNAVAILABLE (an idempotent
 * producer resends instead, see pier_producer_options); the next call reconnects.
 *
 * Memory: result structs are filled by the library and released with their *_free function;
 * byte pointers inside them stay valid until then. Input buffers are copied or only read during
 * the call. Pointers passed to callbacks are valid only during the callback.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PIER_VERSION "0.1.0"

/* gRPC status codes. */
enum {
    PIER_OK = 0,
    PIER_CANCELLED = 1,
    PIER_UNKNOWN = 2,
    PIER_INVALID_ARGUMENT = 3,
    PIER_DEADLINE_EXCEEDED = 4,
    PIER_NOT_FOUND = 5,
    PIER_ALREADY_EXISTS = 6,
    PIER_PERMISSION_DENIED = 7,
    PIER_RESOURCE_EXHAUSTED = 8,
    PIER_FAILED_PRECONDITION = 9,
    PIER_ABORTED = 10,
    PIER_OUT_OF_RANGE = 11,
    PIER_UNIMPLEMENTED = 12,
    PIER_INTERNAL = 13,
    PIER_UNAVAILABLE = 14,
    PIER_DATA_LOSS = 15,
    PIER_UNAUTHENTICATED = 16
};

/* A call's outcome. The message is truncated to fit. */
typedef struct pier_status {
    int code;
    char message[512];
} pier_status;

/* "OK", "NOT_FOUND", ... */
const char *pier_code_name(int code);

/* ============================================================================================
 * Client
 * ========================================================================================== */

typedef struct pier_client pier_client;

typedef struct pier_client_options {
    /* Deadline of each blocking call in milliseconds, sent as grpc-timeout (0: none).
     * Changeable later with pier_client_set_timeout(). */
    int64_t call_timeout_ms;
    /* Bound on connecting (0: 5000). */
    int64_t connect_timeout_ms;
    /* Largest message accepted from the server (0: 64 MiB). */
    size_t max_recv_message_bytes;
} pier_client_options;

/* Connects to "HOST:PORT" ("[v6addr]:PORT" for IPv6; an "http://" prefix is accepted). opts may
 * be NULL. Returns NULL on failure with *st filled. */
pier_client *pier_client_new(const char *endpoint, const pier_client_options *opts,
                             pier_status *st);
/* Cancels every open stream (their callbacks are not called), closes the connection and frees
 * the client. Objects created from the client must be freed before. */
void pier_client_free(pier_client *c);

/* Deadline for blocking calls started from now on (0: none). */
void pier_client_set_timeout(pier_client *c, int64_t timeout_ms);

/* Runs the event loop once: waits up to timeout_ms (-1: until something happens) for network
 * activity or a timer, then delivers callbacks. Returns PIER_OK or PIER_UNAVAILABLE when the
 * connection is down (the next blocking call reconnects; pier_client_reconnect does it now). */
int pier_client_poll(pier_client *c, int timeout_ms);
/* Runs the event loop for duration_ms. */
int pier_client_run_for(pier_client *c, int64_t duration_ms);
/* The socket to wait on for readability when integrating with another loop (-1 when down). */
int pier_client_fd(const pier_client *c);
int pier_client_reconnect(pier_client *c, pier_status *st);

/* ============================================================================================
 * Health (grpc.health.v1)
 * ========================================================================================== */

enum { PIER_HEALTH_UNKNOWN = 0, PIER_HEALTH_SERVING = 1, PIER_HEALTH_NOT_SERVING = 2,
       PIER_HEALTH_SERVICE_UNKNOWN = 3 };

/* service "" asks about the server as a whole. */
int pier_health_check(pier_client *c, const char *service, int *serving_status, pier_status *st);

/* ============================================================================================
 * KV (etcd v3 semantics: etcdserverpb.KV)
 * ========================================================================================== */

/* A key-value pair as stored, with its MVCC metadata. */
typedef struct pier_kv {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
} pier_kv;

/* Range ends (etcd's conventions): NULL/empty = just `key`; "\0" (length 1) with key "\0" =
 * every key; pier_prefix_end() = every key starting with `key`. */

/* Writes into out (capacity cap, at least key_len) the range end covering every key with this
 * prefix; returns its length (1 with out = "\0" when the prefix is all 0xff or empty). */
size_t pier_prefix_end(const void *key, size_t key_len, uint8_t *out, size_t cap);

enum { PIER_SORT_NONE = 0, PIER_SORT_ASCEND = 1, PIER_SORT_DESCEND = 2 };
enum { PIER_SORT_BY_KEY = 0, PIER_SORT_BY_VERSION = 1, PIER_SORT_BY_CREATE = 2,
       PIER_SORT_BY_MOD = 3, PIER_SORT_BY_VALUE = 4 };

typedef struct pier_range_options {
    const void *range_end;
    size_t range_end_len;
    int64_t limit;         /* 0: no limit */
    int64_t revision;      /* 0: latest */
    int sort_order;        /* PIER_SORT_* */
    int sort_target;       /* PIER_SORT_BY_* */
    bool serializable;
    bool keys_only;
    bool count_only;
    int64_t min_mod_revision, max_mod_revision;
    int64_t min_create_revision, max_create_revision;
} pier_range_options;

typedef struct pier_range_result {
    int64_t revision;      /* store revision when the range was read */
    int64_t count;         /* number of keys in the range (ignoring limit) */
    bool more;             /* true when limit cut the result */
    size_t n_kvs;
    pier_kv *kvs;
    void *internal_;
} pier_range_result;

typedef struct pier_put_options {
    int64_t lease;
    bool prev_kv;
    bool ignore_value;
    bool ignore_lease;
} pier_put_options;

typedef struct pier_put_result {
    int64_t revision;
    bool has_prev_kv;
    pier_kv prev_kv;
    void *internal_;
} pier_put_result;

typedef struct pier_delete_options {
    const void *range_end;
    size_t range_end_len;
    bool prev_kv;
} pier_delete_options;

typedef struct pier_delete_result {
    int64_t revision;
    int64_t deleted;
    size_t n_prev_kvs;
    pier_kv *prev_kvs;
    void *internal_;
} pier_delete_result;

/* opts may be NULL; result pointers may be NULL when the caller does not need the result. */
int pier_kv_get(pier_client *c, const void *key, size_t key_len, const pier_range_options *opts,
                pier_range_result *out, pier_status *st);
int pier_kv_put(pier_client *c, const void *key, size_t key_len, const void *value,
                size_t value_len, const pier_put_options *opts, pier_put_result *out,
                pier_status *st);
int pier_kv_delete(pier_client *c, const void *key, size_t key_len,
                   const pier_delete_options *opts, pier_delete_result *out, pier_status *st);
/* Discards history before revision; physical waits until it is removed from disk. */
int pier_kv_compact(pier_client *c, int64_t revision, bool physical, int64_t *header_revision,
                    pier_status *st);

void pier_range_result_free(pier_range_result *r);
void pier_put_result_free(pier_put_result *r);
void pier_delete_result_free(pier_delete_result *r);

/* Transactions: if every compare holds, run `success`, otherwise `failure`. */
enum { PIER_CMP_VERSION = 0, PIER_CMP_CREATE = 1, PIER_CMP_MOD = 2, PIER_CMP_VALUE = 3,
       PIER_CMP_LEASE = 4 };
enum { PIER_CMP_EQUAL = 0, PIER_CMP_GREATER = 1, PIER_CMP_LESS = 2, PIER_CMP_NOT_EQUAL = 3 };

typedef struct pier_compare {
    int target;            /* PIER_CMP_VERSION ... */
    int result;            /* PIER_CMP_EQUAL ... */
    const void *key;
    size_t key_len;
    const void *range_end; /* compare every key in [key, range_end) */
    size_t range_end_len;
    int64_t number;        /* version / create / mod revision / lease for non-value targets */
    const void *value;     /* for PIER_CMP_VALUE */
    size_t value_len;
} pier_compare;

enum { PIER_OP_RANGE = 1, PIER_OP_PUT = 2, PIER_OP_DELETE = 3 };

typedef struct pier_op {
    int type;              /* PIER_OP_* */
    const void *key;
    size_t key_len;
    const void *value;     /* put */
    size_t value_len;
    const void *range_end; /* range, delete */
    size_t range_end_len;
    int64_t lease;         /* put */
    bool prev_kv;          /* put, delete */
    int64_t limit;         /* range */
    int64_t revision;      /* range */
    bool keys_only;        /* range */
    bool count_only;       /* range */
} pier_op;

typedef struct pier_op_result {
    int type;              /* PIER_OP_* */
    int64_t count;         /* range: keys in range; delete: keys deleted */
    bool more;             /* range */
    size_t n_kvs;          /* range: kvs; put: prev kv (0 or 1); delete: prev kvs */
    pier_kv *kvs;
} pier_op_result;

typedef struct pier_txn_result {
    int64_t revision;
    bool succeeded;
    size_t n_results;
    pier_op_result *results;
    void *internal_;
} pier_txn_result;

int pier_kv_txn(pier_client *c, const pier_compare *compares, size_t n_compares,
                const pier_op *success, size_t n_success, const pier_op *failure,
                size_t n_failure, pier_txn_result *out, pier_status *st);
void pier_txn_result_free(pier_txn_result *r);

/* ============================================================================================
 * Watch (etcdserverpb.Watch): one gRPC stream per watch
 * ========================================================================================== */

enum { PIER_EVENT_PUT = 0, PIER_EVENT_DELETE = 1 };

typedef struct pier_event {
    int type;              /* PIER_EVENT_* */
    pier_kv kv;            /* for a delete: the key and the deletion's mod_revision */
    bool has_prev_kv;
    pier_kv prev_kv;
} pier_event;

typedef struct pier_watch pier_watch;

/* Called with each batch of events (end == NULL), and once with end != NULL when the watch
 * ends on its own: canceled by the server, history compacted (PIER_OUT_OF_RANGE; see
 * pier_watch_compact_revision), or connection lost. A progress notification arrives as a call
 * with n_events == 0. */
typedef void (*pier_watch_fn)(void *user, int64_t revision, const pier_event *events,
                              size_t n_events, const pier_status *end);

typedef struct pier_watch_options {
    const void *range_end;
    size_t range_end_len;
    int64_t start_revision; /* 0: from now */
    bool prev_kv;
    bool progress_notify;
    bool no_put;
    bool no_delete;
} pier_watch_options;

/* Blocks until the server confirms the watch, so every change made after it returns is seen. */
int pier_watch_start(pier_client *c, const void *key, size_t key_len,
                     const pier_watch_options *opts, pier_watch_fn fn, void *user,
                     pier_watch **out, pier_status *st);
/* Non-blocking. Stops the watch (no further callbacks) and frees it. */
void pier_watch_cancel(pier_watch *w);
/* Non-blocking. Asks the server for a progress notification (etcd 3.4+). */
int pier_watch_request_progress(pier_watch *w);
int64_t pier_watch_compact_revision(const pier_watch *w);
bool pier_watch_ended(const pier_watch *w);

/* ============================================================================================
 * Leases (etcdserverpb.Lease)
 * ========================================================================================== */

/* id 0 lets the server choose; granted_ttl may be NULL. */
int pier_lease_grant(pier_client *c, int64_t ttl_seconds, int64_t id, int64_t *lease_id,
                     int64_t *granted_ttl, pier_status *st);
int pier_lease_revoke(pier_client *c, int64_t lease_id, pier_status *st);
/* One keep-alive round trip; *ttl gets the renewed TTL (0 or less: the lease is gone). */
int pier_lease_keep_alive_once(pier_client *c, int64_t lease_id, int64_t *ttl,
                               pier_status *st);

typedef struct pier_lease_info {
    int64_t id;
    int64_t ttl;           /* remaining seconds, -1 when expired or unknown */
    int64_t granted_ttl;
    size_t n_keys;
    pier_kv *keys;         /* only key / key_len are set */
    void *internal_;
} pier_lease_info;

int pier_lease_time_to_live(pier_client *c, int64_t lease_id, bool with_keys,
                            pier_lease_info *out, pier_status *st);
void pier_lease_info_free(pier_lease_info *info);
/* Every lease id; *ids is malloc'ed (free with free()). */
int pier_lease_list(pier_client *c, int64_t **ids, size_t *n_ids, pier_status *st);

/* Keeps a lease alive in the background (renewals sent by the event loop at a third of the
 * TTL) until stopped. Blocks for the first renewal: an unknown lease fails with
 * PIER_NOT_FOUND. */
typedef struct pier_lease_keeper pier_lease_keeper;
/* Called after each renewal with the new TTL, and once with end != NULL when keeping stops
 * (lease expired or revoked: PIER_NOT_FOUND; connection lost: PIER_UNAVAILABLE). fn may be NULL. */
typedef void (*pier_lease_fn)(void *user, int64_t lease_id, int64_t ttl, const pier_status *end);
int pier_lease_keep_alive_start(pier_client *c, int64_t lease_id, pier_lease_fn fn, void *user,
                                pier_lease_keeper **out, pier_status *st);
/* Non-blocking; frees the keeper. */
void pier_lease_keep_alive_stop(pier_lease_keeper *k);

/* ============================================================================================
 * Log (pier.log.v1.Log): topics, produce, fetch/subscribe, consumer groups
 * ========================================================================================== */

typedef struct pier_config_entry {
    const char *key;
    const char *value;
} pier_config_entry;

typedef struct pier_partition_info {
    int32_t partition;
    int64_t log_start_offset;
    int64_t log_end_offset;  /* the high watermark: offset of the next record */
    int64_t size_bytes;
    int32_t segments;
} pier_partition_info;

typedef struct pier_topic_info {
    const char *topic;
    size_t n_configs;
    pier_config_entry *configs;  /* every config, defaults included */
    size_t n_partitions;
    pier_partition_info *partitions;
    void *internal_;
} pier_topic_info;

typedef struct pier_topic_summary {
    const char *topic;
    int32_t partitions;
} pier_topic_summary;

typedef struct pier_topic_list {
    size_t n_topics;
    pier_topic_summary *topics;
    void *internal_;
} pier_topic_list;

/* configs may be NULL; out may be NULL. */
int pier_log_create_topic(pier_client *c, const char *topic, int32_t partitions,
                          const pier_config_entry *configs, size_t n_configs,
                          pier_topic_info *out, pier_status *st);
int pier_log_delete_topic(pier_client *c, const char *topic, pier_status *st);
int pier_log_list_topics(pier_client *c, pier_topic_list *out, pier_status *st);
int pier_log_describe_topic(pier_client *c, const char *topic, pier_topic_info *out,
                            pier_status *st);
/* Sets configs and resets `remove` keys to their defaults; out (may be NULL) gets every config
 * afterwards. */
int pier_log_alter_topic_config(pier_client *c, const char *topic, const pier_config_entry *set,
                                size_t n_set, const char *const *remove, size_t n_remove,
                                pier_topic_info *out, pier_status *st);
void pier_topic_info_free(pier_topic_info *t);
void pier_topic_list_free(pier_topic_list *l);

typedef struct pier_record_header {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
} pier_record_header;

/* A record to produce. key NULL/empty: no key. */
typedef struct pier_produce_record {
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const pier_record_header *headers;
    size_t n_headers;
    int64_t timestamp_ms;  /* 0: the server's clock */
    bool tombstone;
} pier_produce_record;

/* A record as read. */
typedef struct pier_record {
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    bool tombstone;
    size_t n_headers;
    const pier_record_header *headers;
} pier_record;

/* Where a produced record landed. */
typedef struct pier_produce_ack {
    int32_t partition;
    int64_t offset;        /* -1 on failure */
    bool duplicate;        /* a retry of a batch the server had already stored */
    pier_status status;
} pier_produce_ack;

/* Unary produce of one batch to one partition (partition -1: by key, keyless round-robin).
 * *base_offset (may be NULL) gets the first record's offset. */
int pier_log_produce(pier_client *c, const char *topic, int32_t partition,
                     const pier_produce_record *records, size_t n_records,
                     int64_t *base_offset, pier_status *st);

/* Batching, pipelined producer on one ProduceStream. */
typedef struct pier_producer pier_producer;

typedef struct pier_producer_options {
    bool idempotent;          /* takes a producer id and numbers batches per partition; after a
                               * connection loss, unacknowledged requests are resent (the server
                               * drops the copies it already stored) until the call timeout
                               * (30 s without one) */
    size_t batch_max_records; /* 0: 500 */
    size_t batch_max_bytes;   /* 0: 256 KiB */
    int64_t linger_ms;        /* wait this long for more records before sending (0: 5) */
    size_t max_in_flight;     /* requests sent but not acknowledged (0: 16; at most 5 when
                               * idempotent, the batches the server remembers for retries) */
} pier_producer_options;

/* Called once per record, in send order per partition. */
typedef void (*pier_ack_fn)(void *user, const pier_produce_ack *ack);

/* Blocking: looks the topic up (partition count, for keyed records) and, if idempotent, takes
 * a producer id. opts may be NULL. */
int pier_producer_new(pier_client *c, const char *topic, const pier_producer_options *opts,
                      pier_producer **out, pier_status *st);
/* Non-blocking (unless in-flight requests are at the limit and the batch is full: then it runs
 * the loop until there is room, and inside a callback that fails with
 * PIER_RESOURCE_EXHAUSTED). Copies the record. partition -1 picks one: murmur2(key) %
 * partitions as Kafka's Java client does, keyless records round-robin per batch.
 * fn may be NULL. */
int pier_producer_send(pier_producer *p, int32_t partition, const pier_produce_record *rec,
                       pier_ack_fn fn, void *user, pier_status *st);
/* Blocking: sends everything pending and waits for every acknowledgement. Returns the first
 * failure seen since the previous flush (also reported to ack callbacks). After a failed batch
 * an idempotent producer's sequence has a gap the server refuses: make a new producer. */
int pier_producer_flush(pier_producer *p, pier_status *st);
int64_t pier_producer_id(const pier_producer *p);
/* Records sent whose acknowledgement has not arrived yet. */
size_t pier_producer_pending(const pier_producer *p);
/* Unacknowledged records get PIER_CANCELLED acks; call flush first to wait for them. */
void pier_producer_free(pier_producer *p);

/* Fetch: stored records from `offset` on (records below it are skipped). */
typedef struct pier_fetch_result {
    int64_t high_watermark;
    int64_t log_start_offset;
    int64_t next_offset;
    size_t n_records;
    pier_record *records;
    void *internal_;
} pier_fetch_result;

/* max_bytes 0: server default; max_wait_ms 0: answer at once. */
int pier_log_fetch(pier_client *c, const char *topic, int32_t partition, int64_t offset,
                   int32_t max_bytes, int32_t max_wait_ms, pier_fetch_result *out,
                   pier_status *st);
void pier_fetch_result_free(pier_fetch_result *r);

enum { PIER_START_OFFSET = 0, PIER_START_EARLIEST = 1, PIER_START_LATEST = 2,
       PIER_START_TIMESTAMP = 3 };

/* Follows a partition. Called with records (end == NULL) and once with end != NULL when the
 * stream ends (PIER_UNAVAILABLE on connection loss; an offset out of range: PIER_OUT_OF_RANGE). */
typedef void (*pier_records_fn)(void *user, const pier_record *records, size_t n_records,
                                int64_t high_watermark, const pier_status *end);
typedef struct pier_subscription pier_subscription;

/* Non-blocking: the stream opens in the background. position is PIER_START_*; value is the
 * offset or the timestamp in ms it needs. */
int pier_log_subscribe(pier_client *c, const char *topic, int32_t partition, int position,
                       int64_t value, pier_records_fn fn, void *user, pier_subscription **out,
                       pier_status *st);
/* Next offset the subscription will deliver. */
int64_t pier_subscription_next_offset(const pier_subscription *s);
bool pier_subscription_ended(const pier_subscription *s);
/* Non-blocking; stops and frees. */
void pier_subscription_cancel(pier_subscription *s);

enum { PIER_OFFSET_LATEST = 0, PIER_OFFSET_EARLIEST = 1, PIER_OFFSET_TIMESTAMP = 2 };
/* Offset of one partition: the next offset (latest), the first stored (earliest), or the first
 * record at or after timestamp_ms. */
int pier_log_list_offset(pier_client *c, const char *topic, int32_t partition, int spec,
                         int64_t timestamp_ms, int64_t *offset, pier_status *st);

/* Consumer groups */
typedef struct pier_topic_partition_offset {
    const char *topic;
    int32_t partition;
    int64_t offset;        /* the next offset to consume */
    const char *metadata;  /* may be NULL */
} pier_topic_partition_offset;

/* Commits offsets outside a membership (member_id NULL and generation -1 for a group without
 * members, or a member's id and generation). */
int pier_log_commit_offsets(pier_client *c, const char *group_id, const char *member_id,
                            int64_t generation, const pier_topic_partition_offset *offsets,
                            size_t n_offsets, pier_status *st);

typedef struct pier_offset_list {
    size_t n_offsets;
    pier_topic_partition_offset *offsets;
    void *internal_;
} pier_offset_list;

/* Committed offsets of a group; topic NULL: all of them. */
int pier_log_fetch_offsets(pier_client *c, const char *group_id, const char *topic,
                           pier_offset_list *out, pier_status *st);
/* Committed offset of one partition, or -1 when there is none. */
int pier_log_committed_offset(pier_client *c, const char *group_id, const char *topic,
                              int32_t partition, int64_t *offset, pier_status *st);
void pier_offset_list_free(pier_offset_list *l);

typedef struct pier_topic_partition {
    const char *topic;
    int32_t partition;
} pier_topic_partition;

enum { PIER_ASSIGNOR_RANGE = 0, PIER_ASSIGNOR_ROUND_ROBIN = 1, PIER_ASSIGNOR_STICKY = 2 };

typedef struct pier_group_options {
    const char *client_id;       /* may be NULL */
    int32_t session_timeout_ms;  /* 0: server default (10000) */
    int assignor;                /* PIER_ASSIGNOR_* */
} pier_group_options;

typedef struct pier_group_member pier_group_member;

/* Called on every (re)assignment with the member's whole assignment for `generation`, and once
 * with end != NULL when the membership ends on its own. */
typedef void (*pier_assignment_fn)(void *user, int64_t generation,
                                   const pier_topic_partition *assignment, size_t n_assignment,
                                   const pier_status *end);

/* Joins a group (a JoinGroup stream with heartbeats sent by the event loop) and blocks until
 * the first assignment, which is also passed to fn. opts may be NULL. */
int pier_group_join(pier_client *c, const char *group_id, const char *const *topics,
                    size_t n_topics, const pier_group_options *opts, pier_assignment_fn fn,
                    void *user, pier_group_member **out, pier_status *st);
const char *pier_group_member_id(const pier_group_member *m);
int64_t pier_group_generation(const pier_group_member *m);
/* Current assignment (valid until the next loop run). */
const pier_topic_partition *pier_group_assignment(const pier_group_member *m, size_t *n);
/* Blocking: commits with the member's id and current generation. */
int pier_group_commit(pier_group_member *m, const pier_topic_partition_offset *offsets,
                      size_t n_offsets, pier_status *st);
/* Non-blocking: sends leave, closes the stream and frees the member. */
void pier_group_leave(pier_group_member *m);

typedef struct pier_group_summary {
    const char *group_id;
    const char *state;     /* "Empty" or "Stable" */
    int32_t members;
    int64_t generation;
} pier_group_summary;

typedef struct pier_group_list {
    size_t n_groups;
    pier_group_summary *groups;
    void *internal_;
} pier_group_list;

typedef struct pier_group_member_info {
    const char *member_id;
    const char *client_id;
    size_t n_assignment;
    pier_topic_partition *assignment;
} pier_group_member_info;

typedef struct pier_group_info {
    const char *group_id;
    const char *state;
    int64_t generation;
    int assignor;          /* PIER_ASSIGNOR_* */
    size_t n_members;
    pier_group_member_info *members;
    size_t n_topics;
    const char *const *topics;
    void *internal_;
} pier_group_info;

int pier_log_list_groups(pier_client *c, pier_group_list *out, pier_status *st);
int pier_log_describe_group(pier_client *c, const char *group_id, pier_group_info *out,
                            pier_status *st);
void pier_group_list_free(pier_group_list *l);
void pier_group_info_free(pier_group_info *g);

/* Work queues: records leased one at a time and acknowledged individually. */
typedef struct pier_leased_record {
    pier_record record;
    int32_t attempt;            /* 1 on first delivery */
    int64_t lease_expires_ms;
    uint64_t lease_id;
} pier_leased_record;

typedef struct pier_receive_result {
    size_t n_records;
    pier_leased_record *records;
    void *internal_;
} pier_receive_result;

typedef struct pier_lease_ref {
    int32_t partition;
    int64_t offset;
    uint64_t lease_id;
} pier_lease_ref;

/* visibility_timeout_ms 0: server default (30000); max_wait_ms: wait for a record. */
int pier_queue_receive(pier_client *c, const char *topic, const char *queue, int32_t max_records,
                       int32_t visibility_timeout_ms, int32_t max_wait_ms,
                       pier_receive_result *out, pier_status *st);
void pier_receive_result_free(pier_receive_result *r);
/* *done (may be NULL) gets how many leases were still current; stale ones are redelivered. */
int pier_queue_ack(pier_client *c, const char *topic, const char *queue,
                   const pier_lease_ref *leases, size_t n, int32_t *done, pier_status *st);
int pier_queue_nack(pier_client *c, const char *topic, const char *queue,
                    const pier_lease_ref *leases, size_t n, int32_t redeliver_after_ms,
                    int32_t *done, pier_status *st);

#ifdef __cplusplus
}
#endif

#endif /* PIER_H */
