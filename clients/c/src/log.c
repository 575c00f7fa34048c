/* Pier's log API (pier.log.v1.Log): topics, produce, fetch, subscribe, consumer groups. */
#define _GNU_SOURCE
#include "internal.h"

#include "pier/log/v1/log.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define LOG_PATH(m) "/pier.log.v1.Log/" m

static char *str_or_empty(const char *s) { return (char *)(s ? s : ""); }

/* ---------------------------------------------------------------------------------------- */
/* topics */

static void topic_view(pier_topic_info *out, Pier__Log__V1__TopicDescription *d,
                       ProtobufCMessage *owner) {
    memset(out, 0, sizeof *out);
    out->internal_ = owner;
    if (!d) return;
    out->topic = d->topic;
    if (d->n_configs) {
        out->configs = calloc(d->n_configs, sizeof *out->configs);
        if (out->configs) {
            out->n_configs = d->n_configs;
            for (size_t i = 0; i < d->n_configs; i++) {
                out->configs[i].key = d->configs[i]->key;
                out->configs[i].value = d->configs[i]->value;
            }
        }
    }
    if (d->n_partitions) {
        out->partitions = calloc(d->n_partitions, sizeof *out->partitions);
        if (out->partitions) {
            out->n_partitions = d->n_partitions;
            for (size_t i = 0; i < d->n_partitions; i++) {
                Pier__Log__V1__PartitionDescription *p = d->partitions[i];
                out->partitions[i].partition = p->partition;
                out->partitions[i].log_start_offset = p->log_start_offset;
                out->partitions[i].log_end_offset = p->log_end_offset;
                out->partitions[i].size_bytes = p->size_bytes;
                out->partitions[i].segments = p->segments;
            }
        }
    }
}

void pier_topic_info_free(pier_topic_info *t) {
    if (!t) return;
    free(t->configs);
    free(t->partitions);
    if (t->internal_) protobuf_c_message_free_unpacked(t->internal_, NULL);
    memset(t, 0, sizeof *t);
}

int pier_log_create_topic(pier_client *c, const char *topic, int32_t partitions,
                          const pier_config_entry *configs, size_t n_configs,
                          pier_topic_info *out, pier_status *st) {
    if (out) memset(out, 0, sizeof *out);
    Pier__Log__V1__CreateTopicRequest req = PIER__LOG__V1__CREATE_TOPIC_REQUEST__INIT;
    req.topic = str_or_empty(topic);
    req.partitions = partitions;
    Pier__Log__V1__CreateTopicRequest__ConfigsEntry *entries = NULL, **ptrs = NULL;
    if (n_configs) {
        entries = calloc(n_configs, sizeof *entries);
        ptrs = calloc(n_configs, sizeof *ptrs);
        if (!entries || !ptrs) {
            free(entries);
            free(ptrs);
            return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
        }
        for (size_t i = 0; i < n_configs; i++) {
            Pier__Log__V1__CreateTopicRequest__ConfigsEntry e =
                PIER__LOG__V1__CREATE_TOPIC_REQUEST__CONFIGS_ENTRY__INIT;
            e.key = str_or_empty(configs[i].key);
            e.value = str_or_empty(configs[i].value);
            entries[i] = e;
            ptrs[i] = &entries[i];
        }
        req.n_configs = n_configs;
        req.configs = ptrs;
    }
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("CreateTopic"), &req.base,
                         &pier__log__v1__create_topic_response__descriptor, &m, st);
    free(entries);
    free(ptrs);
    if (rc) return rc;
    if (out) topic_view(out, ((Pier__Log__V1__CreateTopicResponse *)m)->topic, m);
    else protobuf_c_message_free_unpacked(m, NULL);
    return PIER_OK;
}

int pier_log_delete_topic(pier_client *c, const char *topic, pier_status *st) {
    Pier__Log__V1__DeleteTopicRequest req = PIER__LOG__V1__DELETE_TOPIC_REQUEST__INIT;
    req.topic = str_or_empty(topic);
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("DeleteTopic"), &req.base,
                         &pier__log__v1__delete_topic_response__descriptor, &m, st);
    if (rc) return rc;
    protobuf_c_message_free_unpacked(m, NULL);
    return PIER_OK;
}

int pier_log_list_topics(pier_client *c, pier_topic_list *out, pier_status *st) {
    memset(out, 0, sizeof *out);
    Pier__Log__V1__ListTopicsRequest req = PIER__LOG__V1__LIST_TOPICS_REQUEST__INIT;
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("ListTopics"), &req.base,
                         &pier__log__v1__list_topics_response__descriptor, &m, st);
    if (rc) return rc;
    Pier__Log__V1__ListTopicsResponse *r = (Pier__Log__V1__ListTopicsResponse *)m;
    out->internal_ = m;
    if (r->n_topics) {
        out->topics = calloc(r->n_topics, sizeof *out->topics);
        if (out->topics) {
            out->n_topics = r->n_topics;
            for (size_t i = 0; i < r->n_topics; i++) {
                out->topics[i].topic = r->topics[i]->topic;
                out->topics[i].partitions = r->topics[i]->partitions;
            }
        }
    }
    return PIER_OK;
}

void pier_topic_list_free(pier_topic_list *l) {
    if (!l) return;
    free(l->topics);
    if (l->internal_) protobuf_c_message_free_unpacked(l->internal_, NULL);
    memset(l, 0, sizeof *l);
}

int pier_log_describe_topic(pier_client *c, const char *topic, pier_topic_info *out,
                            pier_status *st) {
    memset(out, 0, sizeof *out);
    Pier__Log__V1__DescribeTopicRequest req = PIER__LOG__V1__DESCRIBE_TOPIC_REQUEST__INIT;
    req.topic = str_or_empty(topic);
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("DescribeTopic"), &req.base,
                         &pier__log__v1__describe_topic_response__descriptor, &m, st);
    if (rc) return rc;
    topic_view(out, ((Pier__Log__V1__DescribeTopicResponse *)m)->topic, m);
    return PIER_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* records */

/* A produce record copied into one allocation, so a queued record outlives the caller's
 * buffers and is freed with one free(). */
static Pier__Log__V1__Record *record_copy(const pier_produce_record *r, size_t *bytes) {
    size_t klen = r->key ? r->key_len : 0, vlen = r->value ? r->value_len : 0;
    size_t size = sizeof(Pier__Log__V1__Record) + klen + vlen +
                  r->n_headers * (sizeof(Pier__Log__V1__RecordHeader *) +
                                  sizeof(Pier__Log__V1__RecordHeader));
    for (size_t i = 0; i < r->n_headers; i++)
        size += r->headers[i].key_len + r->headers[i].value_len;
    uint8_t *block = malloc(size);
    if (!block) return NULL;
    Pier__Log__V1__Record *rec = (Pier__Log__V1__Record *)(void *)block;
    Pier__Log__V1__Record init = PIER__LOG__V1__RECORD__INIT;
    *rec = init;
    uint8_t *p = block + sizeof *rec;
    Pier__Log__V1__RecordHeader **hp = (Pier__Log__V1__RecordHeader **)(void *)p;
    p += r->n_headers * sizeof *hp;
    Pier__Log__V1__RecordHeader *hs = (Pier__Log__V1__RecordHeader *)(void *)p;
    p += r->n_headers * sizeof *hs;
    for (size_t i = 0; i < r->n_headers; i++) {
        Pier__Log__V1__RecordHeader hinit = PIER__LOG__V1__RECORD_HEADER__INIT;
        hs[i] = hinit;
        hs[i].key.len = r->headers[i].key_len;
        hs[i].key.data = p;
        if (r->headers[i].key_len) memcpy(p, r->headers[i].key, r->headers[i].key_len);
        p += r->headers[i].key_len;
        hs[i].value.len = r->headers[i].value_len;
        hs[i].value.data = p;
        if (r->headers[i].value_len) memcpy(p, r->headers[i].value, r->headers[i].value_len);
        p += r->headers[i].value_len;
        hp[i] = &hs[i];
    }
    rec->n_headers = r->n_headers;
    rec->headers = r->n_headers ? hp : NULL;
    rec->key.len = klen;
    rec->key.data = p;
    if (klen) memcpy(p, r->key, klen);
    p += klen;
    rec->value.len = vlen;
    rec->value.data = p;
    if (vlen) memcpy(p, r->value, vlen);
    rec->timestamp_ms = r->timestamp_ms;
    rec->tombstone = r->tombstone;
    if (bytes) *bytes = size;
    return rec;
}

/* Decoded batches flattened into pier_records (pointers into the message). */
typedef struct record_set {
    pier_record *records;
    size_t n;
    pier_record_header *headers;
} record_set;

static int flatten(Pier__Log__V1__RecordBatch **batches, size_t n_batches, int32_t partition,
                   int64_t min_offset, record_set *out) {
    memset(out, 0, sizeof *out);
    size_t nrec = 0, nhdr = 0;
    for (size_t b = 0; b < n_batches; b++) {
        nrec += batches[b]->n_records;
        for (size_t i = 0; i < batches[b]->n_records; i++)
            nhdr += batches[b]->records[i]->n_headers;
    }
    if (nrec == 0) return 0;
    out->records = calloc(nrec, sizeof *out->records);
    out->headers = nhdr ? calloc(nhdr, sizeof *out->headers) : NULL;
    if (!out->records || (nhdr && !out->headers)) {
        free(out->records);
        free(out->headers);
        memset(out, 0, sizeof *out);
        return -1;
    }
    size_t h = 0;
    for (size_t b = 0; b < n_batches; b++) {
        Pier__Log__V1__RecordBatch *batch = batches[b];
        for (size_t i = 0; i < batch->n_records; i++) {
            Pier__Log__V1__Record *r = batch->records[i];
            int64_t off = (int64_t)batch->base_offset + r->offset_delta;
            if (off < min_offset) continue; /* a fetch starts at the batch holding min_offset */
            pier_record *o = &out->records[out->n++];
            o->partition = partition;
            o->offset = off;
            o->timestamp_ms = r->timestamp_ms;
            o->key = r->key.data;
            o->key_len = r->key.len;
            o->value = r->value.data;
            o->value_len = r->value.len;
            o->tombstone = r->tombstone;
            o->n_headers = r->n_headers;
            o->headers = r->n_headers ? &out->headers[h] : NULL;
            for (size_t j = 0; j < r->n_headers; j++, h++) {
                out->headers[h].key = r->headers[j]->key.data;
                out->headers[h].key_len = r->headers[j]->key.len;
                out->headers[h].value = r->headers[j]->value.data;
                out->headers[h].value_len = r->headers[j]->value.len;
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* partitioning */

/* Kafka's murmur2 (the Java client's DefaultPartitioner), so keys land on the partitions Kafka
 * clients would pick for the same partition count. */
static uint32_t murmur2(const uint8_t *data, size_t len) {
    const uint32_t m = 0x5bd1e995u;
    const int r = 24;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++) {
        const uint8_t *p = data + 4 * i;
        uint32_t k = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                     ((uint32_t)p[3] << 24);
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    const uint8_t *tail = data + (len & ~(size_t)3);
    switch (len % 4) {
    case 3: h ^= (uint32_t)tail[2] << 16; /* fall through */
    case 2: h ^= (uint32_t)tail[1] << 8;  /* fall through */
    case 1: h ^= (uint32_t)tail[0]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

static int32_t partition_for_key(const void *key, size_t len, int32_t partitions) {
    return (int32_t)((murmur2(key, len) & 0x7fffffffu) % (uint32_t)partitions);
}

/* ---------------------------------------------------------------------------------------- */
/* unary produce */

int pier_log_produce(pier_client *c, const char *topic, int32_t partition,
                     const pier_produce_record *records, size_t n_records,
                     int64_t *base_offset, pier_status *st) {
    if (n_records == 0) return pier__status(st, PIER_INVALID_ARGUMENT, "no records to produce");
    Pier__Log__V1__Record **recs = calloc(n_records, sizeof *recs);
    if (!recs) return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    int rc = PIER_OK;
    for (size_t i = 0; i < n_records; i++) {
        recs[i] = record_copy(&records[i], NULL);
        if (!recs[i]) rc = pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    }
    ProtobufCMessage *m = NULL;
    if (rc == PIER_OK) {
        Pier__Log__V1__ProduceBatch batch = PIER__LOG__V1__PRODUCE_BATCH__INIT;
        batch.partitioning = partition >= 0 ? PIER__LOG__V1__PARTITIONING__PARTITIONING_EXPLICIT
                                            : PIER__LOG__V1__PARTITIONING__PARTITIONING_BY_KEY;
        batch.partition = partition >= 0 ? partition : 0;
        batch.n_records = n_records;
        batch.records = recs;
        Pier__Log__V1__ProduceBatch *bp = &batch;
        Pier__Log__V1__ProduceRequest req = PIER__LOG__V1__PRODUCE_REQUEST__INIT;
        req.topic = str_or_empty(topic);
        req.n_batches = 1;
        req.batches = &bp;
        rc = pier__unary(c, LOG_PATH("Produce"), &req.base,
                         &pier__log__v1__produce_response__descriptor, &m, st);
    }
    for (size_t i = 0; i < n_records; i++) free(recs[i]);
    free(recs);
    if (rc) return rc;
    Pier__Log__V1__ProduceResponse *r = (Pier__Log__V1__ProduceResponse *)m;
    int64_t first = -1;
    for (size_t i = 0; i < r->n_results; i++) {
        Pier__Log__V1__ProduceResult *res = r->results[i];
        if (res->error_code != 0) {
            rc = pier__status(st, res->error_code, "%s", str_or_empty(res->error_message));
            break;
        }
        if (first < 0) first = res->base_offset;
    }
    if (rc == PIER_OK && r->n_results == 0)
        rc = pier__status(st, PIER_INTERNAL, "the server returned no produce result");
    protobuf_c_message_free_unpacked(m, NULL);
    if (rc == PIER_OK && base_offset) *base_offset = first;
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* producer */

typedef struct ack_slot {
    pier_ack_fn fn;
    void *user;
} ack_slot;

/* Records accumulated for one partition, not yet sent. */
typedef struct part_batch {
    Pier__Log__V1__Record **recs;
    ack_slot *acks;
    size_t n, cap, bytes;
    int32_t next_sequence; /* idempotent numbering: records sent to the partition so far */
} part_batch;

typedef struct sent_batch {
    int32_t partition;
    size_t n;
    ack_slot *acks;
} sent_batch;

/* A request on the wire awaiting its response. */
typedef struct inflight {
    uint64_t request_id;
    size_t n_batches;
    sent_batch *batches;
    uint8_t *packed;       /* idempotent producers keep the request to resend it verbatim */
    size_t packed_len;
    struct inflight *next;
} inflight;

struct pier_producer {
    pier_client *c;
    char *topic;
    int32_t n_partitions;
    int64_t producer_id;
    pier_producer_options o;
    part_batch *parts;
    size_t unsent;         /* records in parts */
    inflight *head, *tail;
    size_t n_inflight;
    size_t unacked;        /* records sent, not acknowledged */
    pier_call *call;
    uint64_t next_request_id;
    int32_t sticky;        /* partition for keyless records until the next send */
    pier_timer linger;
    pier_timer retry;
    bool retrying;         /* the stream broke with requests unanswered; resending them */
    int64_t retry_until;
    bool has_error;
    pier_status first_error;
    int in_callback;
    bool free_pending;
};

static void ack_one(pier_producer *p, const ack_slot *a, const pier_produce_ack *ack) {
    if (ack->status.code != PIER_OK && !p->has_error) {
        p->has_error = true;
        p->first_error = ack->status;
    }
    if (a->fn) {
        p->in_callback++;
        a->fn(a->user, ack);
        p->in_callback--;
    }
}

static void fail_inflight(pier_producer *p, const pier_status *st) {
    while (p->head) {
        inflight *f = p->head;
        p->head = f->next;
        for (size_t b = 0; b < f->n_batches; b++) {
            for (size_t i = 0; i < f->batches[b].n; i++) {
                pier_produce_ack ack = {.partition = f->batches[b].partition, .offset = -1,
                                        .status = *st};
                ack_one(p, &f->batches[b].acks[i], &ack);
            }
            p->unacked -= f->batches[b].n;
            free(f->batches[b].acks);
        }
        free(f->batches);
        free(f->packed);
        free(f);
    }
    p->tail = NULL;
    p->n_inflight = 0;
}

static void fail_unsent(pier_producer *p, const pier_status *st) {
    for (int32_t i = 0; i < p->n_partitions; i++) {
        part_batch *pb = &p->parts[i];
        for (size_t j = 0; j < pb->n; j++) {
            free(pb->recs[j]);
            pier_produce_ack ack = {.partition = i, .offset = -1, .status = *st};
            ack_one(p, &pb->acks[j], &ack);
        }
        p->unsent -= pb->n;
        pb->n = 0;
        pb->bytes = 0;
    }
}

static void producer_maybe_free(pier_producer *p);
static void producer_destroy(pier_producer *p);

static int producer_msg(void *user, const uint8_t *data, size_t len) {
    pier_producer *p = user;
    Pier__Log__V1__ProduceResponse *r = pier__log__v1__produce_response__unpack(NULL, len, data);
    if (!r) return -1;
    /* Replies come in request order; anything else is a protocol error. */
    inflight *f = p->head;
    if (!f || f->request_id != r->request_id) {
        pier__log__v1__produce_response__free_unpacked(r, NULL);
        return -1;
    }
    p->head = f->next;
    if (!p->head) p->tail = NULL;
    p->n_inflight--;
    for (size_t b = 0; b < f->n_batches; b++) {
        Pier__Log__V1__ProduceResult *res = NULL;
        for (size_t i = 0; i < r->n_results; i++)
            if (r->results[i]->batch_index == (int32_t)b) res = r->results[i];
        for (size_t i = 0; i < f->batches[b].n; i++) {
            pier_produce_ack ack = {.partition = f->batches[b].partition, .offset = -1};
            if (!res) {
                pier__status(&ack.status, PIER_INTERNAL, "no result for batch %zu", b);
            } else if (res->error_code != 0) {
                pier__status(&ack.status, res->error_code, "%s", str_or_empty(res->error_message));
            } else {
                ack.partition = res->partition;
                ack.offset = res->base_offset + (int64_t)i;
                ack.duplicate = res->duplicate;
            }
            ack_one(p, &f->batches[b].acks[i], &ack);
        }
        p->unacked -= f->batches[b].n;
        free(f->batches[b].acks);
    }
    free(f->batches);
    free(f->packed);
    free(f);
    pier__log__v1__produce_response__free_unpacked(r, NULL);
    producer_maybe_free(p);
    return 0;
}

static void producer_close(void *user, const pier_status *st, pier_call *call);

/* Idempotent producers resend unanswered requests on a new stream: the server recognises
 * batches it already stored by producer id and sequence, so nothing is written twice. */
static void producer_retry(void *arg) {
    pier_producer *p = arg;
    pier_status st;
    p->call = pier__call_start(p->c, LOG_PATH("ProduceStream"), 0, producer_msg, producer_close,
                               p, &st);
    if (!p->call) {
        if (pier__now_ms() < p->retry_until) {
            pier__timer_arm(p->c, &p->retry, 250);
            return;
        }
        p->retrying = false;
        fail_inflight(p, &st);
        producer_maybe_free(p);
        return;
    }
    for (inflight *f = p->head; f; f = f->next)
        pier__call_send_packed(p->call, f->packed, f->packed_len);
    p->retrying = false;
}

static void producer_close(void *user, const pier_status *st, pier_call *call) {
    (void)call;
    pier_producer *p = user;
    p->call = NULL;
    pier_status s = *st;
    if (s.code == PIER_OK && p->head)
        pier__status(&s, PIER_UNAVAILABLE, "the produce stream ended with requests unanswered");
    if (s.code == PIER_UNAVAILABLE && p->producer_id && p->head && !p->free_pending) {
        int64_t now = pier__now_ms();
        if (!p->retrying) {
            int64_t budget = pier__client_timeout(p->c);
            p->retrying = true;
            p->retry_until = now + (budget > 0 ? budget : 30000);
        }
        if (now < p->retry_until) {
            pier__timer_arm(p->c, &p->retry, 100);
            return;
        }
    }
    p->retrying = false;
    fail_inflight(p, &s);
    producer_maybe_free(p);
}

/* Sends every non-empty partition batch as one ProduceRequest. */
static int producer_send_now(pier_producer *p, pier_status *st) {
    /* While resending, new batches wait: their sequences must follow the resent ones. */
    if (p->unsent == 0 || p->retrying) return PIER_OK;
    if (!p->call) {
        p->call = pier__call_start(p->c, LOG_PATH("ProduceStream"), 0, producer_msg,
                                   producer_close, p, st);
        if (!p->call) return st ? st->code : PIER_UNAVAILABLE;
    }
    size_t nb = 0;
    for (int32_t i = 0; i < p->n_partitions; i++)
        if (p->parts[i].n) nb++;
    inflight *f = calloc(1, sizeof *f);
    Pier__Log__V1__ProduceBatch *batches = calloc(nb, sizeof *batches);
    Pier__Log__V1__ProduceBatch **bptrs = calloc(nb, sizeof *bptrs);
    if (f) f->batches = calloc(nb, sizeof *f->batches);
    if (!f || !batches || !bptrs || !f->batches) {
        if (f) free(f->batches);
        free(f);
        free(batches);
        free(bptrs);
        return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    }
    size_t k = 0;
    for (int32_t i = 0; i < p->n_partitions; i++) {
        part_batch *pb = &p->parts[i];
        if (!pb->n) continue;
        Pier__Log__V1__ProduceBatch init = PIER__LOG__V1__PRODUCE_BATCH__INIT;
        batches[k] = init;
        batches[k].partitioning = PIER__LOG__V1__PARTITIONING__PARTITIONING_EXPLICIT;
        batches[k].partition = i;
        batches[k].base_sequence = p->producer_id ? pb->next_sequence : 0;
        batches[k].n_records = pb->n;
        batches[k].records = pb->recs;
        bptrs[k] = &batches[k];
        k++;
    }
    Pier__Log__V1__ProduceRequest req = PIER__LOG__V1__PRODUCE_REQUEST__INIT;
    req.topic = p->topic;
    req.n_batches = nb;
    req.batches = bptrs;
    req.producer_id = p->producer_id;
    req.request_id = ++p->next_request_id;
    f->packed_len = protobuf_c_message_get_packed_size(&req.base);
    f->packed = malloc(f->packed_len ? f->packed_len : 1);
    int rc = PIER_RESOURCE_EXHAUSTED;
    if (f->packed) {
        protobuf_c_message_pack(&req.base, f->packed);
        rc = pier__call_send_packed(p->call, f->packed, f->packed_len);
    }
    free(batches);
    free(bptrs);
    if (rc != PIER_OK) {
        free(f->packed);
        free(f->batches);
        free(f);
        return pier__status(st, rc, "cannot queue a produce request");
    }
    if (!p->producer_id) {
        free(f->packed); /* without idempotence a resend could duplicate: never resent */
        f->packed = NULL;
    }
    /* Encoded into the stream's buffer: the record copies are no longer needed. */
    f->request_id = req.request_id;
    f->n_batches = nb;
    k = 0;
    for (int32_t i = 0; i < p->n_partitions; i++) {
        part_batch *pb = &p->parts[i];
        if (!pb->n) continue;
        for (size_t j = 0; j < pb->n; j++) free(pb->recs[j]);
        f->batches[k].partition = i;
        f->batches[k].n = pb->n;
        f->batches[k].acks = pb->acks;
        k++;
        pb->next_sequence += (int32_t)pb->n;
        p->unacked += pb->n;
        p->unsent -= pb->n;
        pb->acks = NULL;
        free(pb->recs);
        pb->recs = NULL;
        pb->n = pb->cap = pb->bytes = 0;
    }
    if (p->tail) p->tail->next = f;
    else p->head = f;
    p->tail = f;
    p->n_inflight++;
    p->sticky = p->n_partitions > 0 ? (p->sticky + 1) % p->n_partitions : 0;
    pier__timer_disarm(p->c, &p->linger);
    return PIER_OK;
}

static void producer_linger(void *arg) {
    pier_producer *p = arg;
    if (p->n_inflight >= p->o.max_in_flight || p->retrying) {
        pier__timer_arm(p->c, &p->linger, 1); /* retry once a reply frees a slot */
        return;
    }
    pier_status st;
    if (producer_send_now(p, &st) != PIER_OK) fail_unsent(p, &st);
    producer_maybe_free(p);
}

static bool batch_full(const pier_producer *p) {
    for (int32_t i = 0; i < p->n_partitions; i++)
        if (p->parts[i].n >= p->o.batch_max_records || p->parts[i].bytes >= p->o.batch_max_bytes)
            return true;
    return false;
}

int pier_producer_new(pier_client *c, const char *topic, const pier_producer_options *opts,
                      pier_producer **out, pier_status *st) {
    *out = NULL;
    int rc = pier__check_blocking(c, st);
    if (rc) return rc;
    pier_topic_info info;
    rc = pier_log_describe_topic(c, topic, &info, st);
    if (rc) return rc;
    int32_t np = (int32_t)info.n_partitions;
    pier_topic_info_free(&info);
    if (np <= 0) return pier__status(st, PIER_FAILED_PRECONDITION, "topic has no partitions");
    pier_producer *p = calloc(1, sizeof *p);
    if (!p) return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    p->c = c;
    p->topic = strdup(topic);
    p->n_partitions = np;
    p->parts = calloc((size_t)np, sizeof *p->parts);
    if (opts) p->o = *opts;
    if (!p->o.batch_max_records) p->o.batch_max_records = 500;
    if (!p->o.batch_max_bytes) p->o.batch_max_bytes = 256 * 1024;
    if (!p->o.linger_ms) p->o.linger_ms = 5;
    if (!p->o.max_in_flight) p->o.max_in_flight = 16;
    /* The server remembers an idempotent producer's last 5 batches per partition (as Kafka
     * does); a resent batch older than that would be refused as out of order. */
    if (p->o.idempotent && p->o.max_in_flight > 5) p->o.max_in_flight = 5;
    p->linger.fn = producer_linger;
    p->linger.arg = p;
    p->retry.fn = producer_retry;
    p->retry.arg = p;
    if (!p->topic || !p->parts) {
        free(p->topic);
        free(p->parts);
        free(p);
        return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    }
    if (p->o.idempotent) {
        Pier__Log__V1__InitProducerRequest req = PIER__LOG__V1__INIT_PRODUCER_REQUEST__INIT;
        ProtobufCMessage *m;
        rc = pier__unary(c, LOG_PATH("InitProducer"), &req.base,
                         &pier__log__v1__init_producer_response__descriptor, &m, st);
        if (rc) {
            free(p->topic);
            free(p->parts);
            free(p);
            return rc;
        }
        p->producer_id = ((Pier__Log__V1__InitProducerResponse *)m)->producer_id;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    *out = p;
    pier__status_ok(st);
    return PIER_OK;
}

int pier_producer_send(pier_producer *p, int32_t partition, const pier_produce_record *rec,
                       pier_ack_fn fn, void *user, pier_status *st) {
    if (partition >= p->n_partitions)
        return pier__status(st, PIER_INVALID_ARGUMENT, "partition %d out of range (topic has %d)",
                            partition, p->n_partitions);
    if (partition < 0)
        partition = rec->key && rec->key_len ? partition_for_key(rec->key, rec->key_len, p->n_partitions)
                                             : p->sticky;
    part_batch *pb = &p->parts[partition];
    /* Backpressure: a full batch that cannot be sent waits for in-flight replies. */
    while (pb->n >= p->o.batch_max_records &&
           (p->n_inflight >= p->o.max_in_flight || p->retrying)) {
        if (pier__check_blocking(p->c, NULL) != PIER_OK)
            return pier__status(st, PIER_RESOURCE_EXHAUSTED,
                                "producer queue full (send from a callback cannot wait)");
        pier_client_poll(p->c, 50);
    }
    if (pb->n == pb->cap) {
        size_t cap = pb->cap ? pb->cap * 2 : 16;
        Pier__Log__V1__Record **r = realloc(pb->recs, cap * sizeof *r);
        if (!r) return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
        pb->recs = r;
        ack_slot *a = realloc(pb->acks, cap * sizeof *a);
        if (!a) return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
        pb->acks = a;
        pb->cap = cap;
    }
    size_t bytes = 0;
    Pier__Log__V1__Record *copy = record_copy(rec, &bytes);
    if (!copy) return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    pb->recs[pb->n] = copy;
    pb->acks[pb->n].fn = fn;
    pb->acks[pb->n].user = user;
    pb->n++;
    pb->bytes += bytes;
    p->unsent++;
    if (batch_full(p) && p->n_inflight < p->o.max_in_flight && !p->retrying) {
        int rc = producer_send_now(p, st);
        if (rc) return rc;
    } else if (!p->linger.armed) {
        pier__timer_arm(p->c, &p->linger, p->o.linger_ms);
    }
    pier__status_ok(st);
    return PIER_OK;
}

int pier_producer_flush(pier_producer *p, pier_status *st) {
    int rc = pier__check_blocking(p->c, st);
    if (rc) return rc;
    int64_t timeout = pier__client_timeout(p->c);
    int64_t give_up = timeout > 0 ? pier__now_ms() + timeout : 0;
    while (p->unsent > 0 || p->n_inflight > 0) {
        if (p->unsent > 0 && p->n_inflight < p->o.max_in_flight && !p->retrying) {
            pier_status s;
            if (producer_send_now(p, &s) != PIER_OK) fail_unsent(p, &s);
            continue;
        }
        if (give_up && pier__now_ms() >= give_up)
            return pier__status(st, PIER_DEADLINE_EXCEEDED,
                                "deadline exceeded with %zu records unacknowledged",
                                p->unsent + p->unacked);
        pier_client_poll(p->c, 50);
        if (p->free_pending) break;
    }
    if (p->free_pending) {
        /* An ack callback freed the producer while we waited. */
        producer_destroy(p);
        return pier__status(st, PIER_CANCELLED, "producer freed during flush");
    }
    if (p->has_error) {
        rc = p->first_error.code;
        pier__status_copy(st, &p->first_error);
        p->has_error = false;
        return rc;
    }
    pier__status_ok(st);
    return PIER_OK;
}

int64_t pier_producer_id(const pier_producer *p) { return p->producer_id; }
size_t pier_producer_pending(const pier_producer *p) { return p->unsent + p->unacked; }

static void producer_destroy(pier_producer *p) {
    pier_status st;
    pier__status(&st, PIER_CANCELLED, "producer closed");
    pier__timer_disarm(p->c, &p->linger);
    pier__timer_disarm(p->c, &p->retry);
    if (p->call) {
        /* Half-close so the server finishes what it has; our callbacks are detached. */
        pier__call_close_send(p->call);
        pier__call_detach(p->call);
        p->call = NULL;
    }
    /* Unacknowledged records are reported as cancelled, but only to live callbacks. */
    fail_unsent(p, &st);
    fail_inflight(p, &st);
    for (int32_t i = 0; i < p->n_partitions; i++) {
        free(p->parts[i].recs);
        free(p->parts[i].acks);
    }
    free(p->parts);
    free(p->topic);
    free(p);
}

static void producer_maybe_free(pier_producer *p) {
    if (p->free_pending && p->in_callback == 0) producer_destroy(p);
}

void pier_producer_free(pier_producer *p) {
    if (!p) return;
    if (p->in_callback) {
        p->free_pending = true;
        return;
    }
    producer_destroy(p);
}

/* ---------------------------------------------------------------------------------------- */
/* fetch */

typedef struct fetch_owner {
    ProtobufCMessage *msg;
    pier_record_header *headers;
} fetch_owner;

int pier_log_fetch(pier_client *c, const char *topic, int32_t partition, int64_t offset,
                   int32_t max_bytes, int32_t max_wait_ms, pier_fetch_result *out,
                   pier_status *st) {
    memset(out, 0, sizeof *out);
    Pier__Log__V1__FetchRequest req = PIER__LOG__V1__FETCH_REQUEST__INIT;
    req.topic = str_or_empty(topic);
    req.partition = partition;
    req.offset = offset;
    req.max_bytes = max_bytes;
    req.max_wait_ms = max_wait_ms;
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("Fetch"), &req.base,
                         &pier__log__v1__fetch_response__descriptor, &m, st);
    if (rc) return rc;
    Pier__Log__V1__FetchResponse *r = (Pier__Log__V1__FetchResponse *)m;
    record_set rs;
    fetch_owner *own = calloc(1, sizeof *own);
    if (!own || flatten(r->batches, r->n_batches, partition, offset, &rs) != 0) {
        free(own);
        protobuf_c_message_free_unpacked(m, NULL);
        return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    }
    own->msg = m;
    own->headers = rs.headers;
    out->high_watermark = r->high_watermark;
    out->log_start_offset = r->log_start_offset;
    out->next_offset = r->next_offset;
    out->n_records = rs.n;
    out->records = rs.records;
    out->internal_ = own;
    return PIER_OK;
}

void pier_fetch_result_free(pier_fetch_result *r) {
    if (!r) return;
    fetch_owner *own = r->internal_;
    if (own) {
        protobuf_c_message_free_unpacked(own->msg, NULL);
        free(own->headers);
        free(own);
    }
    free(r->records);
    memset(r, 0, sizeof *r);
}

int pier_log_list_offset(pier_client *c, const char *topic, int32_t partition, int spec,
                         int64_t timestamp_ms, int64_t *offset, pier_status *st) {
    Pier__Log__V1__ListOffsetsRequest req = PIER__LOG__V1__LIST_OFFSETS_REQUEST__INIT;
    req.topic = str_or_empty(topic);
    req.n_partitions = 1;
    req.partitions = &partition;
    req.spec = (Pier__Log__V1__OffsetSpec)spec;
    req.timestamp_ms = timestamp_ms;
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("ListOffsets"), &req.base,
                         &pier__log__v1__list_offsets_response__descriptor, &m, st);
    if (rc) return rc;
    Pier__Log__V1__ListOffsetsResponse *r = (Pier__Log__V1__ListOffsetsResponse *)m;
    rc = pier__status(st, PIER_INTERNAL, "partition %d missing from the reply", partition);
    for (size_t i = 0; i < r->n_offsets; i++) {
        if (r->offsets[i]->partition == partition) {
            if (offset) *offset = r->offsets[i]->offset;
            rc = PIER_OK;
            pier__status_ok(st);
        }
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* subscribe */

struct pier_subscription {
    pier_client *c;
    pier_call *call;
    int32_t partition;
    int64_t next_offset;   /* -1 until known (earliest/latest/timestamp starts) */
    pier_records_fn fn;
    void *user;
    bool ended;
    bool in_callback;
    bool free_pending;
};

static int sub_msg(void *user, const uint8_t *data, size_t len) {
    pier_subscription *s = user;
    Pier__Log__V1__SubscribeResponse *r =
        pier__log__v1__subscribe_response__unpack(NULL, len, data);
    if (!r) return -1;
    record_set rs;
    if (flatten(r->batches, r->n_batches, s->partition, s->next_offset < 0 ? 0 : s->next_offset,
                &rs) != 0) {
        pier__log__v1__subscribe_response__free_unpacked(r, NULL);
        return -1;
    }
    if (r->next_offset > s->next_offset) s->next_offset = r->next_offset;
    if (rs.n && s->fn && !s->free_pending) {
        s->in_callback = true;
        s->fn(s->user, rs.records, rs.n, r->high_watermark, NULL);
        s->in_callback = false;
    }
    free(rs.records);
    free(rs.headers);
    pier__log__v1__subscribe_response__free_unpacked(r, NULL);
    if (s->free_pending) free(s);
    return 0;
}

static void sub_close(void *user, const pier_status *st, pier_call *call) {
    (void)call;
    pier_subscription *s = user;
    s->call = NULL;
    s->ended = true;
    pier_status x = *st;
    if (x.code == PIER_OK) pier__status(&x, PIER_CANCELLED, "the server ended the subscription");
    if (s->fn) {
        s->in_callback = true;
        s->fn(s->user, NULL, 0, -1, &x);
        s->in_callback = false;
    }
    if (s->free_pending) free(s);
}

int pier_log_subscribe(pier_client *c, const char *topic, int32_t partition, int position,
                       int64_t value, pier_records_fn fn, void *user, pier_subscription **out,
                       pier_status *st) {
    *out = NULL;
    pier_subscription *s = calloc(1, sizeof *s);
    if (!s) return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    s->c = c;
    s->partition = partition;
    s->next_offset = position == PIER_START_OFFSET ? value : -1;
    s->fn = fn;
    s->user = user;
    s->call = pier__call_start(c, LOG_PATH("Subscribe"), 0, sub_msg, sub_close, s, st);
    if (!s->call) {
        free(s);
        return st ? st->code : PIER_UNAVAILABLE;
    }
    Pier__Log__V1__SubscribeRequest req = PIER__LOG__V1__SUBSCRIBE_REQUEST__INIT;
    req.topic = str_or_empty(topic);
    req.partition = partition;
    req.start = (Pier__Log__V1__StartPosition)position;
    if (position == PIER_START_OFFSET) req.offset = value;
    if (position == PIER_START_TIMESTAMP) req.timestamp_ms = value;
    pier__call_send(s->call, &req.base);
    pier__call_close_send(s->call);
    *out = s;
    pier__status_ok(st);
    return PIER_OK;
}

int64_t pier_subscription_next_offset(const pier_subscription *s) { return s->next_offset; }
bool pier_subscription_ended(const pier_subscription *s) { return s->ended; }

void pier_subscription_cancel(pier_subscription *s) {
    if (!s) return;
    if (s->call) {
        pier__call_cancel(s->call);
        s->call = NULL;
    }
    if (s->in_callback) s->free_pending = true;
    else free(s);
}

/* ---------------------------------------------------------------------------------------- */
/* group offsets */

int pier_log_commit_offsets(pier_client *c, const char *group_id, const char *member_id,
                            int64_t generation, const pier_topic_partition_offset *offsets,
                            size_t n_offsets, pier_status *st) {
    Pier__Log__V1__TopicPartitionOffset *tpo = calloc(n_offsets ? n_offsets : 1, sizeof *tpo);
    Pier__Log__V1__TopicPartitionOffset **ptrs = calloc(n_offsets ? n_offsets : 1, sizeof *ptrs);
    if (!tpo || !ptrs) {
        free(tpo);
        free(ptrs);
        return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < n_offsets; i++) {
        Pier__Log__V1__TopicPartitionOffset init = PIER__LOG__V1__TOPIC_PARTITION_OFFSET__INIT;
        tpo[i] = init;
        tpo[i].topic = str_or_empty(offsets[i].topic);
        tpo[i].partition = offsets[i].partition;
        tpo[i].offset = offsets[i].offset;
        tpo[i].metadata = str_or_empty(offsets[i].metadata);
        ptrs[i] = &tpo[i];
    }
    Pier__Log__V1__CommitOffsetsRequest req = PIER__LOG__V1__COMMIT_OFFSETS_REQUEST__INIT;
    req.group_id = str_or_empty(group_id);
    req.member_id = str_or_empty(member_id);
    req.generation = generation;
    req.n_offsets = n_offsets;
    req.offsets = ptrs;
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("CommitOffsets"), &req.base,
                         &pier__log__v1__commit_offsets_response__descriptor, &m, st);
    free(tpo);
    free(ptrs);
    if (rc) return rc;
    protobuf_c_message_free_unpacked(m, NULL);
    return PIER_OK;
}

int pier_log_fetch_offsets(pier_client *c, const char *group_id, const char *topic,
                           pier_offset_list *out, pier_status *st) {
    memset(out, 0, sizeof *out);
    Pier__Log__V1__FetchOffsetsRequest req = PIER__LOG__V1__FETCH_OFFSETS_REQUEST__INIT;
    req.group_id = str_or_empty(group_id);
    /* Asks for every committed offset and filters here: a topic entry without partitions
     * would not mean "all partitions" to every server. */
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("FetchOffsets"), &req.base,
                         &pier__log__v1__fetch_offsets_response__descriptor, &m, st);
    if (rc) return rc;
    Pier__Log__V1__FetchOffsetsResponse *r = (Pier__Log__V1__FetchOffsetsResponse *)m;
    out->internal_ = m;
    if (r->n_offsets) {
        out->offsets = calloc(r->n_offsets, sizeof *out->offsets);
        if (out->offsets) {
            for (size_t i = 0; i < r->n_offsets; i++) {
                Pier__Log__V1__TopicPartitionOffset *o = r->offsets[i];
                if (topic && strcmp(o->topic, topic) != 0) continue;
                pier_topic_partition_offset *d = &out->offsets[out->n_offsets++];
                d->topic = o->topic;
                d->partition = o->partition;
                d->offset = o->offset;
                d->metadata = o->metadata;
            }
        }
    }
    return PIER_OK;
}

int pier_log_committed_offset(pier_client *c, const char *group_id, const char *topic,
                              int32_t partition, int64_t *offset, pier_status *st) {
    pier_offset_list l;
    int rc = pier_log_fetch_offsets(c, group_id, topic, &l, st);
    if (rc) return rc;
    *offset = -1;
    for (size_t i = 0; i < l.n_offsets; i++)
        if (l.offsets[i].partition == partition) *offset = l.offsets[i].offset;
    pier_offset_list_free(&l);
    return PIER_OK;
}

void pier_offset_list_free(pier_offset_list *l) {
    if (!l) return;
    free(l->offsets);
    if (l->internal_) protobuf_c_message_free_unpacked(l->internal_, NULL);
    memset(l, 0, sizeof *l);
}

/* ---------------------------------------------------------------------------------------- */
/* group membership */

struct pier_group_member {
    pier_client *c;
    pier_call *call;
    char *group_id;
    char *member_id;
    int64_t generation;
    int32_t heartbeat_ms;
    pier_topic_partition *assignment;
    size_t n_assignment;
    char **assignment_topics;   /* owned strings the assignment points into */
    size_t n_assignment_topics;
    pier_timer heartbeat;
    pier_assignment_fn fn;
    void *user;
    bool joined;
    bool ended;
    bool in_callback;
    bool free_pending;
    pier_status end_status;
};

static void clear_assignment(pier_group_member *m) {
    for (size_t i = 0; i < m->n_assignment_topics; i++) free(m->assignment_topics[i]);
    free(m->assignment_topics);
    free(m->assignment);
    m->assignment_topics = NULL;
    m->assignment = NULL;
    m->n_assignment = m->n_assignment_topics = 0;
}

static void member_free(pier_group_member *m) {
    pier__timer_disarm(m->c, &m->heartbeat);
    clear_assignment(m);
    free(m->group_id);
    free(m->member_id);
    free(m);
}

static void member_heartbeat(void *arg) {
    pier_group_member *m = arg;
    if (!m->call || m->ended) return;
    Pier__Log__V1__GroupHeartbeat hb = PIER__LOG__V1__GROUP_HEARTBEAT__INIT;
    hb.generation = m->generation;
    Pier__Log__V1__JoinGroupRequest req = PIER__LOG__V1__JOIN_GROUP_REQUEST__INIT;
    req.kind_case = PIER__LOG__V1__JOIN_GROUP_REQUEST__KIND_HEARTBEAT;
    req.heartbeat = &hb;
    pier__call_send(m->call, &req.base);
    pier__timer_arm(m->c, &m->heartbeat, m->heartbeat_ms);
}

static int member_msg(void *user, const uint8_t *data, size_t len) {
    pier_group_member *m = user;
    Pier__Log__V1__JoinGroupResponse *r =
        pier__log__v1__join_group_response__unpack(NULL, len, data);
    if (!r) return -1;
    clear_assignment(m);
    size_t total = 0;
    for (size_t i = 0; i < r->n_assignment; i++) total += r->assignment[i]->n_partitions;
    m->assignment_topics = r->n_assignment ? calloc(r->n_assignment, sizeof(char *)) : NULL;
    m->assignment = total ? calloc(total, sizeof *m->assignment) : NULL;
    if ((r->n_assignment && !m->assignment_topics) || (total && !m->assignment)) {
        pier__log__v1__join_group_response__free_unpacked(r, NULL);
        return -1;
    }
    for (size_t i = 0; i < r->n_assignment; i++) {
        char *t = strdup(r->assignment[i]->topic);
        m->assignment_topics[m->n_assignment_topics++] = t;
        for (size_t j = 0; j < r->assignment[i]->n_partitions; j++) {
            m->assignment[m->n_assignment].topic = t;
            m->assignment[m->n_assignment].partition = r->assignment[i]->partitions[j];
            m->n_assignment++;
        }
    }
    if (r->member_id && *r->member_id && (!m->member_id || strcmp(m->member_id, r->member_id))) {
        free(m->member_id);
        m->member_id = strdup(r->member_id);
    }
    m->generation = r->generation;
    m->heartbeat_ms = r->heartbeat_interval_ms > 0 ? r->heartbeat_interval_ms : 3000;
    pier__log__v1__join_group_response__free_unpacked(r, NULL);
    m->joined = true;
    pier__timer_arm(m->c, &m->heartbeat, m->heartbeat_ms);
    if (m->fn) {
        m->in_callback = true;
        m->fn(m->user, m->generation, m->assignment, m->n_assignment, NULL);
        m->in_callback = false;
    }
    if (m->free_pending) member_free(m);
    return 0;
}

static void member_close(void *user, const pier_status *st, pier_call *call) {
    (void)call;
    pier_group_member *m = user;
    m->call = NULL;
    m->ended = true;
    pier__timer_disarm(m->c, &m->heartbeat);
    m->end_status = *st;
    if (m->end_status.code == PIER_OK)
        pier__status(&m->end_status, PIER_CANCELLED, "the server ended the membership");
    if (m->joined && m->fn) {
        m->in_callback = true;
        m->fn(m->user, m->generation, NULL, 0, &m->end_status);
        m->in_callback = false;
    }
    if (m->free_pending) member_free(m);
}

int pier_group_join(pier_client *c, const char *group_id, const char *const *topics,
                    size_t n_topics, const pier_group_options *opts, pier_assignment_fn fn,
                    void *user, pier_group_member **out, pier_status *st) {
    *out = NULL;
    int rc = pier__check_blocking(c, st);
    if (rc) return rc;
    pier_group_member *m = calloc(1, sizeof *m);
    if (!m || !(m->group_id = strdup(group_id))) {
        free(m);
        return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    }
    m->c = c;
    m->fn = fn;
    m->user = user;
    m->heartbeat.fn = member_heartbeat;
    m->heartbeat.arg = m;
    m->call = pier__call_start(c, LOG_PATH("JoinGroup"), 0, member_msg, member_close, m, st);
    if (!m->call) {
        rc = st ? st->code : PIER_UNAVAILABLE;
        member_free(m);
        return rc;
    }
    Pier__Log__V1__JoinGroup j = PIER__LOG__V1__JOIN_GROUP__INIT;
    j.group_id = m->group_id;
    j.n_topics = n_topics;
    j.topics = (char **)topics;
    j.member_id = "";
    if (opts) {
        j.client_id = str_or_empty(opts->client_id);
        j.session_timeout_ms = opts->session_timeout_ms;
        j.assignor = (Pier__Log__V1__Assignor)opts->assignor;
    }
    Pier__Log__V1__JoinGroupRequest req = PIER__LOG__V1__JOIN_GROUP_REQUEST__INIT;
    req.kind_case = PIER__LOG__V1__JOIN_GROUP_REQUEST__KIND_JOIN;
    req.join = &j;
    pier__call_send(m->call, &req.base);
    int64_t timeout = pier__client_timeout(c);
    int64_t give_up = timeout > 0 ? pier__now_ms() + timeout : 0;
    while (!m->joined && !m->ended) {
        if (give_up && pier__now_ms() >= give_up) {
            pier__status(&m->end_status, PIER_DEADLINE_EXCEEDED, "deadline exceeded");
            m->ended = true;
            break;
        }
        pier_client_poll(c, 20);
    }
    if (!m->joined) {
        pier__status_copy(st, &m->end_status);
        rc = m->end_status.code ? m->end_status.code : PIER_UNAVAILABLE;
        if (m->call) pier__call_cancel(m->call);
        member_free(m);
        return rc;
    }
    *out = m;
    pier__status_ok(st);
    return PIER_OK;
}

const char *pier_group_member_id(const pier_group_member *m) {
    return m->member_id ? m->member_id : "";
}
int64_t pier_group_generation(const pier_group_member *m) { return m->generation; }

const pier_topic_partition *pier_group_assignment(const pier_group_member *m, size_t *n) {
    *n = m->n_assignment;
    return m->assignment;
}

int pier_group_commit(pier_group_member *m, const pier_topic_partition_offset *offsets,
                      size_t n_offsets, pier_status *st) {
    return pier_log_commit_offsets(m->c, m->group_id, m->member_id, m->generation, offsets,
                                   n_offsets, st);
}

void pier_group_leave(pier_group_member *m) {
    if (!m) return;
    pier__timer_disarm(m->c, &m->heartbeat);
    if (m->call) {
        Pier__Log__V1__LeaveGroup lv = PIER__LOG__V1__LEAVE_GROUP__INIT;
        Pier__Log__V1__JoinGroupRequest req = PIER__LOG__V1__JOIN_GROUP_REQUEST__INIT;
        req.kind_case = PIER__LOG__V1__JOIN_GROUP_REQUEST__KIND_LEAVE;
        req.leave = &lv;
        pier__call_send(m->call, &req.base);
        pier__call_close_send(m->call);
        /* The leave goes out with the next loop run; the stream ends on the server's side. */
        pier__call_detach(m->call);
        m->call = NULL;
    }
    if (m->in_callback) m->free_pending = true;
    else member_free(m);
}

/* ---------------------------------------------------------------------------------------- */
/* topic configs, group listings */

int pier_log_alter_topic_config(pier_client *c, const char *topic, const pier_config_entry *set,
                                size_t n_set, const char *const *remove, size_t n_remove,
                                pier_topic_info *out, pier_status *st) {
    if (out) memset(out, 0, sizeof *out);
    Pier__Log__V1__AlterTopicConfigRequest__SetEntry *entries =
        calloc(n_set ? n_set : 1, sizeof *entries);
    Pier__Log__V1__AlterTopicConfigRequest__SetEntry **ptrs = calloc(n_set ? n_set : 1, sizeof *ptrs);
    if (!entries || !ptrs) {
        free(entries);
        free(ptrs);
        return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < n_set; i++) {
        Pier__Log__V1__AlterTopicConfigRequest__SetEntry e =
            PIER__LOG__V1__ALTER_TOPIC_CONFIG_REQUEST__SET_ENTRY__INIT;
        e.key = str_or_empty(set[i].key);
        e.value = str_or_empty(set[i].value);
        entries[i] = e;
        ptrs[i] = &entries[i];
    }
    Pier__Log__V1__AlterTopicConfigRequest req = PIER__LOG__V1__ALTER_TOPIC_CONFIG_REQUEST__INIT;
    req.topic = str_or_empty(topic);
    req.n_set = n_set;
    req.set = ptrs;
    req.n_remove = n_remove;
    req.remove = (char **)remove;
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("AlterTopicConfig"), &req.base,
                         &pier__log__v1__alter_topic_config_response__descriptor, &m, st);
    free(entries);
    free(ptrs);
    if (rc) return rc;
    if (out) topic_view(out, ((Pier__Log__V1__AlterTopicConfigResponse *)m)->topic, m);
    else protobuf_c_message_free_unpacked(m, NULL);
    return PIER_OK;
}

int pier_log_list_groups(pier_client *c, pier_group_list *out, pier_status *st) {
    memset(out, 0, sizeof *out);
    Pier__Log__V1__ListGroupsRequest req = PIER__LOG__V1__LIST_GROUPS_REQUEST__INIT;
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("ListGroups"), &req.base,
                         &pier__log__v1__list_groups_response__descriptor, &m, st);
    if (rc) return rc;
    Pier__Log__V1__ListGroupsResponse *r = (Pier__Log__V1__ListGroupsResponse *)m;
    out->internal_ = m;
    if (r->n_groups && (out->groups = calloc(r->n_groups, sizeof *out->groups))) {
        out->n_groups = r->n_groups;
        for (size_t i = 0; i < r->n_groups; i++) {
            out->groups[i].group_id = r->groups[i]->group_id;
            out->groups[i].state = r->groups[i]->state;
            out->groups[i].members = r->groups[i]->members;
            out->groups[i].generation = r->groups[i]->generation;
        }
    }
    return PIER_OK;
}

void pier_group_list_free(pier_group_list *l) {
    if (!l) return;
    free(l->groups);
    if (l->internal_) protobuf_c_message_free_unpacked(l->internal_, NULL);
    memset(l, 0, sizeof *l);
}

typedef struct group_info_owner {
    ProtobufCMessage *msg;
    pier_topic_partition *parts;
} group_info_owner;

int pier_log_describe_group(pier_client *c, const char *group_id, pier_group_info *out,
                            pier_status *st) {
    memset(out, 0, sizeof *out);
    Pier__Log__V1__DescribeGroupRequest req = PIER__LOG__V1__DESCRIBE_GROUP_REQUEST__INIT;
    req.group_id = str_or_empty(group_id);
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("DescribeGroup"), &req.base,
                         &pier__log__v1__describe_group_response__descriptor, &m, st);
    if (rc) return rc;
    Pier__Log__V1__DescribeGroupResponse *r = (Pier__Log__V1__DescribeGroupResponse *)m;
    size_t total = 0;
    for (size_t i = 0; i < r->n_members; i++)
        for (size_t j = 0; j < r->members[i]->n_assignment; j++)
            total += r->members[i]->assignment[j]->n_partitions;
    group_info_owner *own = calloc(1, sizeof *own);
    pier_group_member_info *members = r->n_members ? calloc(r->n_members, sizeof *members) : NULL;
    pier_topic_partition *parts = total ? calloc(total, sizeof *parts) : NULL;
    if (!own || (r->n_members && !members) || (total && !parts)) {
        free(own);
        free(members);
        free(parts);
        protobuf_c_message_free_unpacked(m, NULL);
        return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < r->n_members; i++) {
        Pier__Log__V1__GroupMember *gm = r->members[i];
        members[i].member_id = gm->member_id;
        members[i].client_id = gm->client_id;
        members[i].assignment = parts ? &parts[k] : NULL;
        for (size_t j = 0; j < gm->n_assignment; j++) {
            for (size_t q = 0; q < gm->assignment[j]->n_partitions; q++) {
                parts[k].topic = gm->assignment[j]->topic;
                parts[k].partition = gm->assignment[j]->partitions[q];
                k++;
                members[i].n_assignment++;
            }
        }
    }
    own->msg = m;
    own->parts = parts;
    out->group_id = r->group_id;
    out->state = r->state;
    out->generation = r->generation;
    out->assignor = (int)r->assignor;
    out->n_members = r->n_members;
    out->members = members;
    out->n_topics = r->n_topics;
    out->topics = (const char *const *)r->topics;
    out->internal_ = own;
    return PIER_OK;
}

void pier_group_info_free(pier_group_info *g) {
    if (!g) return;
    group_info_owner *own = g->internal_;
    if (own) {
        protobuf_c_message_free_unpacked(own->msg, NULL);
        free(own->parts);
        free(own);
    }
    free(g->members);
    memset(g, 0, sizeof *g);
}

/* ---------------------------------------------------------------------------------------- */
/* work queues */

typedef struct receive_owner {
    ProtobufCMessage *msg;
    pier_record_header *headers;
} receive_owner;

int pier_queue_receive(pier_client *c, const char *topic, const char *queue, int32_t max_records,
                       int32_t visibility_timeout_ms, int32_t max_wait_ms,
                       pier_receive_result *out, pier_status *st) {
    memset(out, 0, sizeof *out);
    Pier__Log__V1__ReceiveRequest req = PIER__LOG__V1__RECEIVE_REQUEST__INIT;
    req.topic = str_or_empty(topic);
    req.queue = str_or_empty(queue);
    req.max_records = max_records;
    req.visibility_timeout_ms = visibility_timeout_ms;
    req.max_wait_ms = max_wait_ms;
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("Receive"), &req.base,
                         &pier__log__v1__receive_response__descriptor, &m, st);
    if (rc) return rc;
    Pier__Log__V1__ReceiveResponse *r = (Pier__Log__V1__ReceiveResponse *)m;
    size_t nh = 0;
    for (size_t i = 0; i < r->n_records; i++)
        if (r->records[i]->record) nh += r->records[i]->record->n_headers;
    receive_owner *own = calloc(1, sizeof *own);
    pier_leased_record *recs = r->n_records ? calloc(r->n_records, sizeof *recs) : NULL;
    pier_record_header *hdrs = nh ? calloc(nh, sizeof *hdrs) : NULL;
    if (!own || (r->n_records && !recs) || (nh && !hdrs)) {
        free(own);
        free(recs);
        free(hdrs);
        protobuf_c_message_free_unpacked(m, NULL);
        return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    }
    size_t h = 0;
    for (size_t i = 0; i < r->n_records; i++) {
        Pier__Log__V1__LeasedRecord *lr = r->records[i];
        pier_leased_record *o = &recs[i];
        o->attempt = lr->attempt;
        o->lease_expires_ms = lr->lease_expires_ms;
        o->lease_id = lr->lease_id;
        o->record.partition = lr->partition;
        o->record.offset = lr->offset;
        Pier__Log__V1__Record *rec = lr->record;
        if (!rec) continue;
        o->record.timestamp_ms = rec->timestamp_ms;
        o->record.key = rec->key.data;
        o->record.key_len = rec->key.len;
        o->record.value = rec->value.data;
        o->record.value_len = rec->value.len;
        o->record.tombstone = rec->tombstone;
        o->record.n_headers = rec->n_headers;
        o->record.headers = rec->n_headers ? &hdrs[h] : NULL;
        for (size_t j = 0; j < rec->n_headers; j++, h++) {
            hdrs[h].key = rec->headers[j]->key.data;
            hdrs[h].key_len = rec->headers[j]->key.len;
            hdrs[h].value = rec->headers[j]->value.data;
            hdrs[h].value_len = rec->headers[j]->value.len;
        }
    }
    own->msg = m;
    own->headers = hdrs;
    out->n_records = r->n_records;
    out->records = recs;
    out->internal_ = own;
    return PIER_OK;
}

void pier_receive_result_free(pier_receive_result *r) {
    if (!r) return;
    receive_owner *own = r->internal_;
    if (own) {
        protobuf_c_message_free_unpacked(own->msg, NULL);
        free(own->headers);
        free(own);
    }
    free(r->records);
    memset(r, 0, sizeof *r);
}

static Pier__Log__V1__LeaseRef **lease_refs(const pier_lease_ref *leases, size_t n,
                                            Pier__Log__V1__LeaseRef **storage) {
    *storage = calloc(n ? n : 1, sizeof **storage);
    Pier__Log__V1__LeaseRef **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (!*storage || !ptrs) {
        free(*storage);
        free(ptrs);
        *storage = NULL;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        Pier__Log__V1__LeaseRef init = PIER__LOG__V1__LEASE_REF__INIT;
        (*storage)[i] = init;
        (*storage)[i].partition = leases[i].partition;
        (*storage)[i].offset = leases[i].offset;
        (*storage)[i].lease_id = leases[i].lease_id;
        ptrs[i] = &(*storage)[i];
    }
    return ptrs;
}

int pier_queue_ack(pier_client *c, const char *topic, const char *queue,
                   const pier_lease_ref *leases, size_t n, int32_t *done, pier_status *st) {
    Pier__Log__V1__LeaseRef *storage;
    Pier__Log__V1__LeaseRef **ptrs = lease_refs(leases, n, &storage);
    if (!ptrs) return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    Pier__Log__V1__AckRequest req = PIER__LOG__V1__ACK_REQUEST__INIT;
    req.topic = str_or_empty(topic);
    req.queue = str_or_empty(queue);
    req.n_leases = n;
    req.leases = ptrs;
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("Ack"), &req.base, &pier__log__v1__ack_response__descriptor,
                         &m, st);
    free(storage);
    free(ptrs);
    if (rc) return rc;
    if (done) *done = ((Pier__Log__V1__AckResponse *)m)->acked;
    protobuf_c_message_free_unpacked(m, NULL);
    return PIER_OK;
}

int pier_queue_nack(pier_client *c, const char *topic, const char *queue,
                    const pier_lease_ref *leases, size_t n, int32_t redeliver_after_ms,
                    int32_t *done, pier_status *st) {
    Pier__Log__V1__LeaseRef *storage;
    Pier__Log__V1__LeaseRef **ptrs = lease_refs(leases, n, &storage);
    if (!ptrs) return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    Pier__Log__V1__NackRequest req = PIER__LOG__V1__NACK_REQUEST__INIT;
    req.topic = str_or_empty(topic);
    req.queue = str_or_empty(queue);
    req.n_leases = n;
    req.leases = ptrs;
    req.redeliver_after_ms = redeliver_after_ms;
    ProtobufCMessage *m;
    int rc = pier__unary(c, LOG_PATH("Nack"), &req.base,
                         &pier__log__v1__nack_response__descriptor, &m, st);
    free(storage);
    free(ptrs);
    if (rc) return rc;
    if (done) *done = ((Pier__Log__V1__NackResponse *)m)->nacked;
    protobuf_c_message_free_unpacked(m, NULL);
    return PIER_OK;
}
