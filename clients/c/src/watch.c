/* etcd v3 watches and leases: Watch and LeaseKeepAlive streams, lease unary calls. */
#include "internal.h"

#include "etcdserverpb/rpc.pb-c.h"

#include <stdlib.h>
#include <string.h>

struct pier_watch {
    pier_client *c;
    pier_call *call;
    pier_watch_fn fn;
    void *user;
    int64_t watch_id;
    int64_t compact_revision;
    bool created;
    bool started;        /* pier_watch_start returned it to the user */
    bool ended;
    bool in_callback;    /* freeing is deferred until the user's callback returns */
    bool free_pending;
    bool start_done;
    pier_status end_status;
};

static void watch_free(pier_watch *w) { free(w); }

static void watch_end(pier_watch *w, const pier_status *st) {
    if (w->ended) return;
    w->ended = true;
    w->end_status = *st;
    w->start_done = true;
    if (w->started && w->fn) {
        w->in_callback = true;
        w->fn(w->user, 0, NULL, 0, st);
        w->in_callback = false;
    }
}

static int watch_msg(void *user, const uint8_t *data, size_t len) {
    pier_watch *w = user;
    Etcdserverpb__WatchResponse *r =
        etcdserverpb__watch_response__unpack(NULL, len, data);
    if (!r) return -1;
    int64_t rev = r->header ? r->header->revision : 0;
    bool was_created = w->created;
    if (r->created && !w->created) {
        w->created = true;
        w->watch_id = r->watch_id;
        w->start_done = true;
    }
    if (r->n_events > 0 && w->fn && !w->ended) {
        pier_event *ev = calloc(r->n_events, sizeof *ev);
        if (!ev) {
            etcdserverpb__watch_response__free_unpacked(r, NULL);
            return -1;
        }
        for (size_t i = 0; i < r->n_events; i++) {
            Mvccpb__Event *e = r->events[i];
            ev[i].type = e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? PIER_EVENT_DELETE
                                                                      : PIER_EVENT_PUT;
            pier__kv_view(&ev[i].kv, e->kv);
            ev[i].has_prev_kv = e->prev_kv != NULL;
            pier__kv_view(&ev[i].prev_kv, e->prev_kv);
        }
        w->in_callback = true;
        w->fn(w->user, rev, ev, r->n_events, NULL);
        w->in_callback = false;
        free(ev);
    } else if (was_created && !r->canceled && !r->created && w->fn && !w->ended &&
               !w->free_pending) {
        /* No events, not a lifecycle message: a progress notification. */
        w->in_callback = true;
        w->fn(w->user, rev, NULL, 0, NULL);
        w->in_callback = false;
    }
    if (r->canceled && !w->free_pending) {
        pier_status st;
        if (r->compact_revision > 0) {
            w->compact_revision = r->compact_revision;
            pier__status(&st, PIER_OUT_OF_RANGE,
                         "etcdserver: mvcc: required revision has been compacted");
        } else {
            pier__status(&st, PIER_CANCELLED, "%s",
                         r->cancel_reason && *r->cancel_reason ? r->cancel_reason
                                                               : "watch canceled by the server");
        }
        watch_end(w, &st);
        if (w->call) {
            pier__call_cancel(w->call);
            w->call = NULL;
        }
    }
    etcdserverpb__watch_response__free_unpacked(r, NULL);
    if (w->free_pending) {
        if (w->call) pier__call_cancel(w->call);
        watch_free(w);
    }
    return 0;
}

static void watch_close(void *user, const pier_status *st, pier_call *call) {
    (void)call;
    pier_watch *w = user;
    w->call = NULL;
    pier_status s = *st;
    if (s.code == PIER_OK) pier__status(&s, PIER_CANCELLED, "the server ended the watch");
    watch_end(w, &s);
    if (w->free_pending) watch_free(w);
}

int pier_watch_start(pier_client *c, const void *key, size_t key_len,
                     const pier_watch_options *opts, pier_watch_fn fn, void *user,
                     pier_watch **out, pier_status *st) {
    *out = NULL;
    int rc = pier__check_blocking(c, st);
    if (rc) return rc;
    pier_watch *w = calloc(1, sizeof *w);
    if (!w) return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    w->c = c;
    w->fn = fn;
    w->user = user;
    w->call = pier__call_start(c, "/etcdserverpb.Watch/Watch", 0, watch_msg, watch_close, w, st);
    if (!w->call) {
        free(w);
        return st ? st->code : PIER_UNAVAILABLE;
    }
    Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    cr.key.data = (uint8_t *)(uintptr_t)key;
    cr.key.len = key ? key_len : 0;
    Etcdserverpb__WatchCreateRequest__FilterType filters[2];
    if (opts) {
        cr.range_end.data = (uint8_t *)(uintptr_t)opts->range_end;
        cr.range_end.len = opts->range_end ? opts->range_end_len : 0;
        cr.start_revision = opts->start_revision;
        cr.prev_kv = opts->prev_kv;
        cr.progress_notify = opts->progress_notify;
        if (opts->no_put) filters[cr.n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT;
        if (opts->no_delete) filters[cr.n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE;
        cr.filters = filters;
    }
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = &cr;
    pier__call_send(w->call, &req.base);

    /* A deadline bounds only the wait for the confirmation, not the watch itself. */
    int64_t timeout = pier__client_timeout(c);
    int64_t give_up = timeout > 0 ? pier__now_ms() + timeout : 0;
    while (!w->start_done) {
        if (give_up && pier__now_ms() >= give_up) {
            pier__status(&w->end_status, PIER_DEADLINE_EXCEEDED, "deadline exceeded");
            w->ended = true;
            break;
        }
        if (pier_client_poll(c, 20) != PIER_OK && !w->call && !w->start_done) break;
    }
    if (w->ended || !w->created) {
        pier_status s = w->end_status;
        if (s.code == PIER_OK) pier__status(&s, PIER_UNAVAILABLE, "watch was not created");
        pier__status_copy(st, &s);
        /* Cancelling detaches the call's callbacks, so nothing refers to w any more. */
        if (w->call) pier__call_cancel(w->call);
        watch_free(w);
        return s.code;
    }
    w->started = true;
    *out = w;
    pier__status_ok(st);
    return PIER_OK;
}

void pier_watch_cancel(pier_watch *w) {
    if (!w) return;
    if (w->call) {
        pier__call_cancel(w->call);
        w->call = NULL;
    }
    if (w->in_callback) w->free_pending = true;
    else watch_free(w);
}

int pier_watch_request_progress(pier_watch *w) {
    if (!w->call) return PIER_FAILED_PRECONDITION;
    Etcdserverpb__WatchProgressRequest pr = ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
    req.progress_request = &pr;
    return pier__call_send(w->call, &req.base);
}

int64_t pier_watch_compact_revision(const pier_watch *w) { return w->compact_revision; }
bool pier_watch_ended(const pier_watch *w) { return w->ended; }

/* ---------------------------------------------------------------------------------------- */
/* leases */

int pier_lease_grant(pier_client *c, int64_t ttl_seconds, int64_t id, int64_t *lease_id,
                     int64_t *granted_ttl, pier_status *st) {
    Etcdserverpb__LeaseGrantRequest req = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    req.ttl = ttl_seconds;
    req.id = id;
    ProtobufCMessage *m;
    int rc = pier__unary(c, "/etcdserverpb.Lease/LeaseGrant", &req.base,
                         &etcdserverpb__lease_grant_response__descriptor, &m, st);
    if (rc) return rc;
    Etcdserverpb__LeaseGrantResponse *r = (Etcdserverpb__LeaseGrantResponse *)m;
    if (r->error && *r->error) {
        rc = pier__status(st, PIER_UNKNOWN, "%s", r->error);
    } else {
        if (lease_id) *lease_id = r->id;
        if (granted_ttl) *granted_ttl = r->ttl;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

int pier_lease_revoke(pier_client *c, int64_t lease_id, pier_status *st) {
    Etcdserverpb__LeaseRevokeRequest req = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    req.id = lease_id;
    ProtobufCMessage *m;
    int rc = pier__unary(c, "/etcdserverpb.Lease/LeaseRevoke", &req.base,
                         &etcdserverpb__lease_revoke_response__descriptor, &m, st);
    if (rc) return rc;
    protobuf_c_message_free_unpacked(m, NULL);
    return PIER_OK;
}

/* A keep-alive stream that sends one request and half-closes is a unary exchange. */
int pier_lease_keep_alive_once(pier_client *c, int64_t lease_id, int64_t *ttl,
                               pier_status *st) {
    Etcdserverpb__LeaseKeepAliveRequest req = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    req.id = lease_id;
    ProtobufCMessage *m;
    int rc = pier__unary(c, "/etcdserverpb.Lease/LeaseKeepAlive", &req.base,
                         &etcdserverpb__lease_keep_alive_response__descriptor, &m, st);
    if (rc) return rc;
    int64_t t = ((Etcdserverpb__LeaseKeepAliveResponse *)m)->ttl;
    protobuf_c_message_free_unpacked(m, NULL);
    if (ttl) *ttl = t;
    if (t <= 0) return pier__status(st, PIER_NOT_FOUND, "etcdserver: requested lease not found");
    return PIER_OK;
}

int pier_lease_time_to_live(pier_client *c, int64_t lease_id, bool with_keys,
                            pier_lease_info *out, pier_status *st) {
    memset(out, 0, sizeof *out);
    Etcdserverpb__LeaseTimeToLiveRequest req = ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
    req.id = lease_id;
    req.keys = with_keys;
    ProtobufCMessage *m;
    int rc = pier__unary(c, "/etcdserverpb.Lease/LeaseTimeToLive", &req.base,
                         &etcdserverpb__lease_time_to_live_response__descriptor, &m, st);
    if (rc) return rc;
    Etcdserverpb__LeaseTimeToLiveResponse *r = (Etcdserverpb__LeaseTimeToLiveResponse *)m;
    out->id = r->id;
    out->ttl = r->ttl;
    out->granted_ttl = r->grantedttl;
    out->n_keys = r->n_keys;
    if (r->n_keys) {
        out->keys = calloc(r->n_keys, sizeof *out->keys);
        for (size_t i = 0; out->keys && i < r->n_keys; i++) {
            out->keys[i].key = r->keys[i].data;
            out->keys[i].key_len = r->keys[i].len;
        }
        if (!out->keys) out->n_keys = 0;
    }
    out->internal_ = m;
    return PIER_OK;
}

void pier_lease_info_free(pier_lease_info *info) {
    if (!info) return;
    free(info->keys);
    if (info->internal_) protobuf_c_message_free_unpacked(info->internal_, NULL);
    memset(info, 0, sizeof *info);
}

int pier_lease_list(pier_client *c, int64_t **ids, size_t *n_ids, pier_status *st) {
    *ids = NULL;
    *n_ids = 0;
    Etcdserverpb__LeaseLeasesRequest req = ETCDSERVERPB__LEASE_LEASES_REQUEST__INIT;
    ProtobufCMessage *m;
    int rc = pier__unary(c, "/etcdserverpb.Lease/LeaseLeases", &req.base,
                         &etcdserverpb__lease_leases_response__descriptor, &m, st);
    if (rc) return rc;
    Etcdserverpb__LeaseLeasesResponse *r = (Etcdserverpb__LeaseLeasesResponse *)m;
    if (r->n_leases) {
        *ids = malloc(r->n_leases * sizeof **ids);
        if (*ids) {
            for (size_t i = 0; i < r->n_leases; i++) (*ids)[i] = r->leases[i]->id;
            *n_ids = r->n_leases;
        }
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return PIER_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* background keep-alive */

struct pier_lease_keeper {
    pier_client *c;
    pier_call *call;
    int64_t id;
    int64_t ttl;
    pier_lease_fn fn;
    void *user;
    pier_timer timer;
    bool got_first;
    bool ended;
    bool in_callback;
    bool free_pending;
    pier_status end_status;
};

static void keeper_end(pier_lease_keeper *k, const pier_status *st) {
    if (k->ended) return;
    k->ended = true;
    k->end_status = *st;
    pier__timer_disarm(k->c, &k->timer);
    if (k->call) {
        pier__call_cancel(k->call);
        k->call = NULL;
    }
    if (k->got_first && k->fn) {
        k->in_callback = true;
        k->fn(k->user, k->id, 0, st);
        k->in_callback = false;
    }
}

static void keeper_send(pier_lease_keeper *k) {
    Etcdserverpb__LeaseKeepAliveRequest req = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    req.id = k->id;
    if (k->call) pier__call_send(k->call, &req.base);
}

static void keeper_tick(void *arg) {
    pier_lease_keeper *k = arg;
    if (k->ended) return;
    keeper_send(k);
    /* etcd's clients renew at a third of the TTL: two renewals may be lost before expiry. */
    int64_t every = k->ttl > 0 ? k->ttl * 1000 / 3 : 500;
    if (every < 100) every = 100;
    pier__timer_arm(k->c, &k->timer, every);
}

static int keeper_msg(void *user, const uint8_t *data, size_t len) {
    pier_lease_keeper *k = user;
    Etcdserverpb__LeaseKeepAliveResponse *r =
        etcdserverpb__lease_keep_alive_response__unpack(NULL, len, data);
    if (!r) return -1;
    int64_t ttl = r->ttl;
    etcdserverpb__lease_keep_alive_response__free_unpacked(r, NULL);
    bool first = !k->got_first;
    k->got_first = true;
    if (ttl <= 0) {
        pier_status st;
        pier__status(&st, PIER_NOT_FOUND, "etcdserver: requested lease not found");
        if (first) k->got_first = false; /* start reports it; no callback */
        keeper_end(k, &st);
        if (first) k->got_first = true;
    } else {
        k->ttl = ttl;
        if (first) {
            int64_t every = ttl * 1000 / 3;
            pier__timer_arm(k->c, &k->timer, every < 100 ? 100 : every);
        } else if (k->fn) {
            k->in_callback = true;
            k->fn(k->user, k->id, ttl, NULL);
            k->in_callback = false;
        }
    }
    if (k->free_pending) {
        pier__timer_disarm(k->c, &k->timer);
        if (k->call) pier__call_cancel(k->call);
        free(k);
    }
    return 0;
}

static void keeper_close(void *user, const pier_status *st, pier_call *call) {
    (void)call;
    pier_lease_keeper *k = user;
    k->call = NULL;
    pier_status s = *st;
    if (s.code == PIER_OK) pier__status(&s, PIER_UNAVAILABLE, "keep-alive stream ended");
    keeper_end(k, &s);
    if (k->free_pending) free(k);
}

int pier_lease_keep_alive_start(pier_client *c, int64_t lease_id, pier_lease_fn fn, void *user,
                                pier_lease_keeper **out, pier_status *st) {
    *out = NULL;
    int rc = pier__check_blocking(c, st);
    if (rc) return rc;
    pier_lease_keeper *k = calloc(1, sizeof *k);
    if (!k) return pier__status(st, PIER_RESOURCE_EXHAUSTED, "out of memory");
    k->c = c;
    k->id = lease_id;
    k->fn = fn;
    k->user = user;
    k->timer.fn = keeper_tick;
    k->timer.arg = k;
    k->call = pier__call_start(c, "/etcdserverpb.Lease/LeaseKeepAlive", 0, keeper_msg,
                               keeper_close, k, st);
    if (!k->call) {
        free(k);
        return st ? st->code : PIER_UNAVAILABLE;
    }
    keeper_send(k);
    int64_t timeout = pier__client_timeout(c);
    int64_t give_up = timeout > 0 ? pier__now_ms() + timeout : 0;
    while (!k->got_first && !k->ended) {
        if (give_up && pier__now_ms() >= give_up) {
            pier_status s;
            pier__status(&s, PIER_DEADLINE_EXCEEDED, "deadline exceeded");
            keeper_end(k, &s);
            break;
        }
        pier_client_poll(c, 20);
    }
    if (k->ended) {
        pier__status_copy(st, &k->end_status);
        rc = k->end_status.code;
        pier__timer_disarm(c, &k->timer);
        if (k->call) pier__call_cancel(k->call);
        free(k);
        return rc;
    }
    *out = k;
    pier__status_ok(st);
    return PIER_OK;
}

void pier_lease_keep_alive_stop(pier_lease_keeper *k) {
    if (!k) return;
    pier__timer_disarm(k->c, &k->timer);
    if (k->call) {
        pier__call_cancel(k->call);
        k->call = NULL;
    }
    k->ended = true;
    if (k->in_callback) k->free_pending = true;
    else free(k);
}
