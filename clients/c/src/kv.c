/* Health check and the etcd v3 KV service: range, put, delete, txn, compact. */
#include "internal.h"

#include "etcdserverpb/rpc.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <stdlib.h>
#include <string.h>

static ProtobufCBinaryData bin(const void *p, size_t n) {
    ProtobufCBinaryData b = {n, (uint8_t *)(uintptr_t)p};
    if (!p) b.len = 0;
    return b;
}

void pier__kv_view(pier_kv *out, const Mvccpb__KeyValue *kv) {
    memset(out, 0, sizeof *out);
    if (!kv) return;
    out->key = kv->key.data;
    out->key_len = kv->key.len;
    out->value = kv->value.data;
    out->value_len = kv->value.len;
    out->create_revision = kv->create_revision;
    out->mod_revision = kv->mod_revision;
    out->version = kv->version;
    out->lease = kv->lease;
}

static pier_kv *kv_array(Mvccpb__KeyValue **kvs, size_t n) {
    if (n == 0) return NULL;
    pier_kv *a = calloc(n, sizeof *a);
    if (!a) return NULL;
    for (size_t i = 0; i < n; i++) pier__kv_view(&a[i], kvs[i]);
    return a;
}

static int64_t header_rev(const Etcdserverpb__ResponseHeader *h) { return h ? h->revision : 0; }

size_t pier_prefix_end(const void *key, size_t key_len, uint8_t *out, size_t cap) {
    const uint8_t *k = key;
    /* etcd's rule: drop trailing 0xff bytes, then increment the last byte. */
    size_t n = key_len;
    while (n > 0 && k[n - 1] == 0xff) n--;
    if (n == 0 || cap < n) {
        if (cap > 0) out[0] = 0;
        return 1;
    }
    memcpy(out, k, n);
    out[n - 1]++;
    return n;
}

/* ---------------------------------------------------------------------------------------- */

int pier_health_check(pier_client *c, const char *service, int *serving_status, pier_status *st) {
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)(service ? service : "");
    ProtobufCMessage *resp;
    int rc = pier__unary(c, "/grpc.health.v1.Health/Check", &req.base,
                         &grpc__health__v1__health_check_response__descriptor, &resp, st);
    if (rc) return rc;
    if (serving_status) *serving_status = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
    protobuf_c_message_free_unpacked(resp, NULL);
    return PIER_OK;
}

/* ---------------------------------------------------------------------------------------- */

static void fill_range_request(Etcdserverpb__RangeRequest *req, const void *key, size_t key_len,
                               const pier_range_options *o) {
    req->key = bin(key, key_len);
    if (!o) return;
    req->range_end = bin(o->range_end, o->range_end_len);
    req->limit = o->limit;
    req->revision = o->revision;
    req->sort_order = (Etcdserverpb__RangeRequest__SortOrder)o->sort_order;
    req->sort_target = (Etcdserverpb__RangeRequest__SortTarget)o->sort_target;
    req->serializable = o->serializable;
    req->keys_only = o->keys_only;
    req->count_only = o->count_only;
    req->min_mod_revision = o->min_mod_revision;
    req->max_mod_revision = o->max_mod_revision;
    req->min_create_revision = o->min_create_revision;
    req->max_create_revision = o->max_create_revision;
}

int pier_kv_get(pier_client *c, const void *key, size_t key_len, const pier_range_options *opts,
                pier_range_result *out, pier_status *st) {
    if (out) memset(out, 0, sizeof *out);
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    fill_range_request(&req, key, key_len, opts);
    ProtobufCMessage *m;
    int rc = pier__unary(c, "/etcdserverpb.KV/Range", &req.base,
                         &etcdserverpb__range_response__descriptor, &m, st);
    if (rc) return rc;
    Etcdserverpb__RangeResponse *r = (Etcdserverpb__RangeResponse *)m;
    if (!out) {
        protobuf_c_message_free_unpacked(m, NULL);
        return PIER_OK;
    }
    out->revision = header_rev(r->header);
    out->count = r->count;
    out->more = r->more;
    out->n_kvs = r->n_kvs;
    out->kvs = kv_array(r->kvs, r->n_kvs);
    out->internal_ = m;
    return PIER_OK;
}

void pier_range_result_free(pier_range_result *r) {
    if (!r) return;
    free(r->kvs);
    if (r->internal_) protobuf_c_message_free_unpacked(r->internal_, NULL);
    memset(r, 0, sizeof *r);
}

int pier_kv_put(pier_client *c, const void *key, size_t key_len, const void *value,
                size_t value_len, const pier_put_options *opts, pier_put_result *out,
                pier_status *st) {
    if (out) memset(out, 0, sizeof *out);
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key = bin(key, key_len);
    req.value = bin(value, value_len);
    if (opts) {
        req.lease = opts->lease;
        req.prev_kv = opts->prev_kv;
        req.ignore_value = opts->ignore_value;
        req.ignore_lease = opts->ignore_lease;
    }
    ProtobufCMessage *m;
    int rc = pier__unary(c, "/etcdserverpb.KV/Put", &req.base,
                         &etcdserverpb__put_response__descriptor, &m, st);
    if (rc) return rc;
    Etcdserverpb__PutResponse *r = (Etcdserverpb__PutResponse *)m;
    if (!out) {
        protobuf_c_message_free_unpacked(m, NULL);
        return PIER_OK;
    }
    out->revision = header_rev(r->header);
    out->has_prev_kv = r->prev_kv != NULL;
    pier__kv_view(&out->prev_kv, r->prev_kv);
    out->internal_ = m;
    return PIER_OK;
}

void pier_put_result_free(pier_put_result *r) {
    if (!r) return;
    if (r->internal_) protobuf_c_message_free_unpacked(r->internal_, NULL);
    memset(r, 0, sizeof *r);
}

int pier_kv_delete(pier_client *c, const void *key, size_t key_len,
                   const pier_delete_options *opts, pier_delete_result *out, pier_status *st) {
    if (out) memset(out, 0, sizeof *out);
    Etcdserverpb__DeleteRangeRequest req = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    req.key = bin(key, key_len);
    if (opts) {
        req.range_end = bin(opts->range_end, opts->range_end_len);
        req.prev_kv = opts->prev_kv;
    }
    ProtobufCMessage *m;
    int rc = pier__unary(c, "/etcdserverpb.KV/DeleteRange", &req.base,
                         &etcdserverpb__delete_range_response__descriptor, &m, st);
    if (rc) return rc;
    Etcdserverpb__DeleteRangeResponse *r = (Etcdserverpb__DeleteRangeResponse *)m;
    if (!out) {
        protobuf_c_message_free_unpacked(m, NULL);
        return PIER_OK;
    }
    out->revision = header_rev(r->header);
    out->deleted = r->deleted;
    out->n_prev_kvs = r->n_prev_kvs;
    out->prev_kvs = kv_array(r->prev_kvs, r->n_prev_kvs);
    out->internal_ = m;
    return PIER_OK;
}

void pier_delete_result_free(pier_delete_result *r) {
    if (!r) return;
    free(r->prev_kvs);
    if (r->internal_) protobuf_c_message_free_unpacked(r->internal_, NULL);
    memset(r, 0, sizeof *r);
}

int pier_kv_compact(pier_client *c, int64_t revision, bool physical, int64_t *header_revision,
                    pier_status *st) {
    Etcdserverpb__CompactionRequest req = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    req.revision = revision;
    req.physical = physical;
    ProtobufCMessage *m;
    int rc = pier__unary(c, "/etcdserverpb.KV/Compact", &req.base,
                         &etcdserverpb__compaction_response__descriptor, &m, st);
    if (rc) return rc;
    if (header_revision)
        *header_revision = header_rev(((Etcdserverpb__CompactionResponse *)m)->header);
    protobuf_c_message_free_unpacked(m, NULL);
    return PIER_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* txn: request messages live in one stack-independent arena freed after the call */

typedef struct op_storage {
    Etcdserverpb__RequestOp op;
    Etcdserverpb__RequestOp *ptr;
    union {
        Etcdserverpb__RangeRequest range;
        Etcdserverpb__PutRequest put;
        Etcdserverpb__DeleteRangeRequest del;
    } u;
} op_storage;

static int build_ops(const pier_op *ops, size_t n, op_storage *store, pier_status *st) {
    for (size_t i = 0; i < n; i++) {
        const pier_op *o = &ops[i];
        op_storage *s = &store[i];
        Etcdserverpb__RequestOp init = ETCDSERVERPB__REQUEST_OP__INIT;
        s->op = init;
        s->ptr = &s->op;
        switch (o->type) {
        case PIER_OP_RANGE: {
            Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
            r.key = bin(o->key, o->key_len);
            r.range_end = bin(o->range_end, o->range_end_len);
            r.limit = o->limit;
            r.revision = o->revision;
            r.keys_only = o->keys_only;
            r.count_only = o->count_only;
            s->u.range = r;
            s->op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
            s->op.request_range = &s->u.range;
            break;
        }
        case PIER_OP_PUT: {
            Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
            r.key = bin(o->key, o->key_len);
            r.value = bin(o->value, o->value_len);
            r.lease = o->lease;
            r.prev_kv = o->prev_kv;
            s->u.put = r;
            s->op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
            s->op.request_put = &s->u.put;
            break;
        }
        case PIER_OP_DELETE: {
            Etcdserverpb__DeleteRangeRequest r = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
            r.key = bin(o->key, o->key_len);
            r.range_end = bin(o->range_end, o->range_end_len);
            r.prev_kv = o->prev_kv;
            s->u.del = r;
            s->op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
            s->op.request_delete_range = &s->u.del;
            break;
        }
        default:
            return pier__status(st, PIER_INVALID_ARGUMENT, "unknown txn op type %d", o->type);
        }
    }
    return PIER_OK;
}

int pier_kv_txn(pier_client *c, const pier_compare *compares, size_t n_compares,
                const pier_op *success, size_t n_success, const pier_op *failure,
                size_t n_failure, pier_txn_result *out, pier_status *st) {
    if (out) memset(out, 0, sizeof *out);
    int rc = pier__check_blocking(c, st);
    if (rc) return rc;
    Etcdserverpb__Compare *cmps = calloc(n_compares ? n_compares : 1, sizeof *cmps);
    Etcdserverpb__Compare **cmp_ptrs = calloc(n_compares ? n_compares : 1, sizeof *cmp_ptrs);
    op_storage *succ = calloc(n_success ? n_success : 1, sizeof *succ);
    op_storage *fail = calloc(n_failure ? n_failure : 1, sizeof *fail);
    Etcdserverpb__RequestOp **succ_ptrs = calloc(n_success ? n_success : 1, sizeof *succ_ptrs);
    Etcdserverpb__RequestOp **fail_ptrs = calloc(n_failure ? n_failure : 1, sizeof *fail_ptrs);
    ProtobufCMessage *m = NULL;
    if (!cmps || !cmp_ptrs || !succ || !fail || !succ_ptrs || !fail_ptrs) {
        rc = pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_compares; i++) {
        const pier_compare *pc = &compares[i];
        Etcdserverpb__Compare init = ETCDSERVERPB__COMPARE__INIT;
        Etcdserverpb__Compare *x = &cmps[i];
        *x = init;
        x->key = bin(pc->key, pc->key_len);
        x->range_end = bin(pc->range_end, pc->range_end_len);
        x->result = (Etcdserverpb__Compare__CompareResult)pc->result;
        x->target = (Etcdserverpb__Compare__CompareTarget)pc->target;
        switch (pc->target) {
        case PIER_CMP_VERSION:
            x->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
            x->version = pc->number;
            break;
        case PIER_CMP_CREATE:
            x->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
            x->create_revision = pc->number;
            break;
        case PIER_CMP_MOD:
            x->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
            x->mod_revision = pc->number;
            break;
        case PIER_CMP_VALUE:
            x->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
            x->value = bin(pc->value, pc->value_len);
            break;
        case PIER_CMP_LEASE:
            x->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
            x->lease = pc->number;
            break;
        default:
            rc = pier__status(st, PIER_INVALID_ARGUMENT, "unknown compare target %d", pc->target);
            goto done;
        }
        cmp_ptrs[i] = x;
    }
    if ((rc = build_ops(success, n_success, succ, st)) != PIER_OK) goto done;
    if ((rc = build_ops(failure, n_failure, fail, st)) != PIER_OK) goto done;
    for (size_t i = 0; i < n_success; i++) succ_ptrs[i] = &succ[i].op;
    for (size_t i = 0; i < n_failure; i++) fail_ptrs[i] = &fail[i].op;

    Etcdserverpb__TxnRequest req = ETCDSERVERPB__TXN_REQUEST__INIT;
    req.n_compare = n_compares;
    req.compare = cmp_ptrs;
    req.n_success = n_success;
    req.success = succ_ptrs;
    req.n_failure = n_failure;
    req.failure = fail_ptrs;
    rc = pier__unary(c, "/etcdserverpb.KV/Txn", &req.base,
                     &etcdserverpb__txn_response__descriptor, &m, st);
    if (rc) goto done;
    Etcdserverpb__TxnResponse *r = (Etcdserverpb__TxnResponse *)m;
    if (!out) goto done;
    out->revision = header_rev(r->header);
    out->succeeded = r->succeeded;
    out->n_results = r->n_responses;
    out->results = r->n_responses ? calloc(r->n_responses, sizeof *out->results) : NULL;
    for (size_t i = 0; out->results && i < r->n_responses; i++) {
        Etcdserverpb__ResponseOp *ro = r->responses[i];
        pier_op_result *pr = &out->results[i];
        switch (ro->response_case) {
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE:
            pr->type = PIER_OP_RANGE;
            pr->count = ro->response_range->count;
            pr->more = ro->response_range->more;
            pr->n_kvs = ro->response_range->n_kvs;
            pr->kvs = kv_array(ro->response_range->kvs, pr->n_kvs);
            break;
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT:
            pr->type = PIER_OP_PUT;
            if (ro->response_put->prev_kv) {
                pr->n_kvs = 1;
                pr->kvs = kv_array(&ro->response_put->prev_kv, 1);
            }
            break;
        case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE:
            pr->type = PIER_OP_DELETE;
            pr->count = ro->response_delete_range->deleted;
            pr->n_kvs = ro->response_delete_range->n_prev_kvs;
            pr->kvs = kv_array(ro->response_delete_range->prev_kvs, pr->n_kvs);
            break;
        default:
            break;
        }
    }
    out->internal_ = m;
    m = NULL;
done:
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    free(cmps);
    free(cmp_ptrs);
    free(succ);
    free(fail);
    free(succ_ptrs);
    free(fail_ptrs);
    return rc;
}

void pier_txn_result_free(pier_txn_result *r) {
    if (!r) return;
    for (size_t i = 0; r->results && i < r->n_results; i++) free(r->results[i].kvs);
    free(r->results);
    if (r->internal_) protobuf_c_message_free_unpacked(r->internal_, NULL);
    memset(r, 0, sizeof *r);
}
