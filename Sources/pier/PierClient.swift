// A thin Swift face on libpier (the C client) so the CLI verbs and bench read as Swift.
import CPier
import Foundation

/// A failed call: the gRPC status code and the server's message, as libpier reports them.
struct PierError: Error, CustomStringConvertible {
    let code: Int32
    let message: String

    var codeName: String { String(cString: pier_code_name(code)) }
    var description: String { message.isEmpty ? codeName : "\(codeName): \(message)" }

    init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }

    init(_ status: pier_status) {
        var status = status
        let message = withUnsafeBytes(of: &status.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        self.init(code: status.code, message: message)
    }
}

/// A stored key-value pair with its MVCC metadata, copied out of libpier's result.
struct KeyValue {
    var key: [UInt8]
    var value: [UInt8]
    var createRevision: Int64
    var modRevision: Int64
    var version: Int64
    var lease: Int64

    init(_ kv: pier_kv) {
        key = bytes(kv.key, kv.key_len)
        value = bytes(kv.value, kv.value_len)
        createRevision = kv.create_revision
        modRevision = kv.mod_revision
        version = kv.version
        lease = kv.lease
    }
}

func bytes(_ pointer: UnsafePointer<UInt8>?, _ count: Int) -> [UInt8] {
    guard let pointer, count > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: pointer, count: count))
}

func cString(_ pointer: UnsafePointer<CChar>?) -> String {
    pointer.map { String(cString: $0) } ?? ""
}

struct RangeResult {
    var revision: Int64
    var count: Int64
    var more: Bool
    var kvs: [KeyValue]
}

struct WatchEvent {
    var isDelete: Bool
    var kv: KeyValue
    var prevKV: KeyValue?
}

struct LeaseInfo {
    var id: Int64
    var ttl: Int64
    var grantedTTL: Int64
    var keys: [[UInt8]]
}

struct PartitionInfo {
    var partition: Int32
    var logStartOffset: Int64
    var logEndOffset: Int64
    var sizeBytes: Int64
    var segments: Int32
}

struct TopicInfo {
    var name: String
    var configs: [(key: String, value: String)]
    var partitions: [PartitionInfo]
}

struct Record {
    var partition: Int32
    var offset: Int64
    var timestampMs: Int64
    var key: [UInt8]
    var value: [UInt8]
}

struct GroupSummary {
    var id: String
    var state: String
    var members: Int32
    var generation: Int64
}

struct GroupInfo {
    struct Member {
        var id: String
        var clientID: String
        var assignment: [(topic: String, partition: Int32)]
    }
    var id: String
    var state: String
    var generation: Int64
    var members: [Member]
    var topics: [String]
}

struct CommittedOffset {
    var topic: String
    var partition: Int32
    var offset: Int64
}

/// Range end for etcd's conventions: the end of a prefix, or "\0" for "from this key on".
func prefixEnd(_ key: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: max(key.count, 1))
    let n = key.withUnsafeBytes { raw in
        out.withUnsafeMutableBufferPointer { pier_prefix_end(raw.baseAddress, raw.count, $0.baseAddress, $0.count) }
    }
    return Array(out.prefix(n))
}

/// One libpier client: one connection, used by one thread at a time (libpier's rule), so the
/// class is deliberately not Sendable; threads that need parallelism make their own.
final class PierClient {
    let raw: OpaquePointer

    init(endpoint: String, timeoutMs: Int64 = 10_000) throws {
        var options = pier_client_options(call_timeout_ms: timeoutMs, connect_timeout_ms: 5_000, max_recv_message_bytes: 0)
        var status = pier_status()
        guard let client = pier_client_new(endpoint, &options, &status) else { throw PierError(status) }
        raw = client
    }

    deinit { pier_client_free(raw) }

    /// Runs the body with a status and turns a non-OK return into a thrown PierError.
    @discardableResult
    func call(_ body: (UnsafeMutablePointer<pier_status>) -> Int32) throws -> Int32 {
        var status = pier_status()
        let rc = body(&status)
        if rc != 0 {
            if status.code == 0 { status.code = rc }
            throw PierError(status)
        }
        return rc
    }

    func setTimeout(ms: Int64) { pier_client_set_timeout(raw, ms) }

    /// Runs the event loop once so streams deliver their callbacks.
    func poll(timeoutMs: Int32) throws {
        let rc = pier_client_poll(raw, timeoutMs)
        if rc != 0 { throw PierError(code: rc, message: "connection lost") }
    }

    // MARK: KV

    @discardableResult
    func put(_ key: [UInt8], _ value: [UInt8], lease: Int64 = 0, prevKV: Bool = false) throws -> (revision: Int64, prev: KeyValue?) {
        var options = pier_put_options(lease: lease, prev_kv: prevKV, ignore_value: false, ignore_lease: false)
        var result = pier_put_result()
        try call { st in
            key.withUnsafeBytes { k in
                value.withUnsafeBytes { v in
                    pier_kv_put(raw, k.baseAddress, k.count, v.baseAddress, v.count, &options, &result, st)
                }
            }
        }
        defer { pier_put_result_free(&result) }
        return (result.revision, result.has_prev_kv ? KeyValue(result.prev_kv) : nil)
    }

    /// Fast path for bench: no result copied out.
    func putDiscarding(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws {
        try call { st in pier_kv_put(raw, key.baseAddress, key.count, value.baseAddress, value.count, nil, nil, st) }
    }

    func get(_ key: [UInt8], rangeEnd: [UInt8]? = nil, limit: Int64 = 0, revision: Int64 = 0,
             keysOnly: Bool = false, countOnly: Bool = false) throws -> RangeResult {
        var result = pier_range_result()
        try call { st in
            let end = rangeEnd ?? []
            return key.withUnsafeBytes { k in
                end.withUnsafeBytes { e in
                    var options = pier_range_options()
                    options.range_end = e.baseAddress
                    options.range_end_len = e.count
                    options.limit = limit
                    options.revision = revision
                    options.keys_only = keysOnly
                    options.count_only = countOnly
                    return pier_kv_get(raw, k.baseAddress, k.count, &options, &result, st)
                }
            }
        }
        defer { pier_range_result_free(&result) }
        let kvs = (0..<result.n_kvs).map { KeyValue(result.kvs[$0]) }
        return RangeResult(revision: result.revision, count: result.count, more: result.more, kvs: kvs)
    }

    /// Fast path for bench: reads and releases the result without copying it.
    func getDiscarding(_ key: UnsafeRawBufferPointer) throws {
        var result = pier_range_result()
        try call { st in pier_kv_get(raw, key.baseAddress, key.count, nil, &result, st) }
        pier_range_result_free(&result)
    }

    func delete(_ key: [UInt8], rangeEnd: [UInt8]? = nil, prevKV: Bool = false) throws -> (revision: Int64, deleted: Int64, prev: [KeyValue]) {
        var result = pier_delete_result()
        try call { st in
            let end = rangeEnd ?? []
            return key.withUnsafeBytes { k in
                end.withUnsafeBytes { e in
                    var options = pier_delete_options(range_end: e.baseAddress, range_end_len: e.count, prev_kv: prevKV)
                    return pier_kv_delete(raw, k.baseAddress, k.count, &options, &result, st)
                }
            }
        }
        defer { pier_delete_result_free(&result) }
        let prev = (0..<result.n_prev_kvs).map { KeyValue(result.prev_kvs[$0]) }
        return (result.revision, result.deleted, prev)
    }

    /// The bench's transaction: if the key exists (version > 0) put it, otherwise put it too but
    /// through the failure branch, so both branches carry one write as etcd's txn-put does.
    func txnPut(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws {
        var compare = pier_compare()
        compare.target = Int32(PIER_CMP_VERSION)
        compare.result = Int32(PIER_CMP_GREATER)
        compare.key = key.baseAddress
        compare.key_len = key.count
        compare.number = 0
        var op = pier_op()
        op.type = Int32(PIER_OP_PUT)
        op.key = key.baseAddress
        op.key_len = key.count
        op.value = value.baseAddress
        op.value_len = value.count
        var result = pier_txn_result()
        try call { st in pier_kv_txn(raw, &compare, 1, &op, 1, &op, 1, &result, st) }
        pier_txn_result_free(&result)
    }

    // MARK: Watch

    /// Starts a watch; `onEvents` runs inside poll() with each batch, `onEnd` once if the
    /// server ends it. Keep the returned handle alive; cancel() stops it.
    func watch(_ key: [UInt8], rangeEnd: [UInt8]? = nil, startRevision: Int64 = 0, prevKV: Bool = false,
               onEvents: @escaping (Int64, [WatchEvent]) -> Void, onEnd: @escaping (PierError) -> Void) throws -> Watch {
        let box = Watch.Box(onEvents: onEvents, onEnd: onEnd)
        var handle: OpaquePointer?
        try call { st in
            let end = rangeEnd ?? []
            return key.withUnsafeBytes { k in
                end.withUnsafeBytes { e in
                    var options = pier_watch_options()
                    options.range_end = e.baseAddress
                    options.range_end_len = e.count
                    options.start_revision = startRevision
                    options.prev_kv = prevKV
                    return pier_watch_start(raw, k.baseAddress, k.count, &options, { user, revision, events, n, end in
                        let box = Unmanaged<Watch.Box>.fromOpaque(user!).takeUnretainedValue()
                        if let end {
                            box.onEnd(PierError(end.pointee))
                            return
                        }
                        var out: [WatchEvent] = []
                        out.reserveCapacity(n)
                        for i in 0..<n {
                            let event = events![i]
                            out.append(WatchEvent(isDelete: event.type == Int32(PIER_EVENT_DELETE), kv: KeyValue(event.kv),
                                                  prevKV: event.has_prev_kv ? KeyValue(event.prev_kv) : nil))
                        }
                        box.onEvents(revision, out)
                    }, Unmanaged.passUnretained(box).toOpaque(), &handle, st)
                }
            }
        }
        return Watch(handle: handle!, box: box)
    }

    // MARK: Leases

    func leaseGrant(ttl: Int64, id: Int64 = 0) throws -> (id: Int64, ttl: Int64) {
        var leaseID: Int64 = 0
        var granted: Int64 = 0
        try call { pier_lease_grant(raw, ttl, id, &leaseID, &granted, $0) }
        return (leaseID, granted)
    }

    func leaseRevoke(_ id: Int64) throws {
        try call { pier_lease_revoke(raw, id, $0) }
    }

    func leaseKeepAliveOnce(_ id: Int64) throws -> Int64 {
        var ttl: Int64 = 0
        try call { pier_lease_keep_alive_once(raw, id, &ttl, $0) }
        return ttl
    }

    func leaseTimeToLive(_ id: Int64, keys: Bool) throws -> LeaseInfo {
        var info = pier_lease_info()
        try call { pier_lease_time_to_live(raw, id, keys, &info, $0) }
        defer { pier_lease_info_free(&info) }
        return LeaseInfo(id: info.id, ttl: info.ttl, grantedTTL: info.granted_ttl,
                         keys: (0..<info.n_keys).map { bytes(info.keys[$0].key, info.keys[$0].key_len) })
    }

    // MARK: Topics

    func createTopic(_ name: String, partitions: Int32, configs: [(String, String)]) throws -> TopicInfo {
        var info = pier_topic_info()
        try withConfigEntries(configs) { entries in
            try call { pier_log_create_topic(raw, name, partitions, entries.baseAddress, entries.count, &info, $0) }
        }
        defer { pier_topic_info_free(&info) }
        return TopicInfo(info)
    }

    func deleteTopic(_ name: String) throws {
        try call { pier_log_delete_topic(raw, name, $0) }
    }

    func listTopics() throws -> [(name: String, partitions: Int32)] {
        var list = pier_topic_list()
        try call { pier_log_list_topics(raw, &list, $0) }
        defer { pier_topic_list_free(&list) }
        return (0..<list.n_topics).map { (cString(list.topics[$0].topic), list.topics[$0].partitions) }
    }

    func describeTopic(_ name: String) throws -> TopicInfo {
        var info = pier_topic_info()
        try call { pier_log_describe_topic(raw, name, &info, $0) }
        defer { pier_topic_info_free(&info) }
        return TopicInfo(info)
    }

    /// Offset of a partition: the next one to be written (latest), the first stored
    /// (earliest), or the first at or after a time.
    func listOffset(_ topic: String, partition: Int32, spec: Int32, timestampMs: Int64 = 0) throws -> Int64 {
        var offset: Int64 = 0
        try call { pier_log_list_offset(raw, topic, partition, spec, timestampMs, &offset, $0) }
        return offset
    }

    // MARK: Produce and read

    func producer(topic: String, idempotent: Bool, batchRecords: Int = 0, lingerMs: Int64 = 0, maxInFlight: Int = 0) throws -> Producer {
        var options = pier_producer_options(idempotent: idempotent, batch_max_records: batchRecords, batch_max_bytes: 0,
                                            linger_ms: lingerMs, max_in_flight: maxInFlight)
        var handle: OpaquePointer?
        try call { pier_producer_new(raw, topic, &options, &handle, $0) }
        return Producer(handle: handle!, client: self)
    }

    /// Follows one partition from a position (PIER_START_*); callbacks run inside poll().
    func subscribe(_ topic: String, partition: Int32, position: Int32, value: Int64,
                   onRecords: @escaping (UnsafeBufferPointer<pier_record>, Int64) -> Void,
                   onEnd: @escaping (PierError) -> Void) throws -> Subscription {
        let box = Subscription.Box(onRecords: onRecords, onEnd: onEnd)
        var handle: OpaquePointer?
        try call { st in
            pier_log_subscribe(raw, topic, partition, position, value, { user, records, n, highWatermark, end in
                let box = Unmanaged<Subscription.Box>.fromOpaque(user!).takeUnretainedValue()
                if let end {
                    box.ended = true
                    box.onEnd(PierError(end.pointee))
                    return
                }
                box.onRecords(UnsafeBufferPointer(start: records, count: n), highWatermark)
            }, Unmanaged.passUnretained(box).toOpaque(), &handle, st)
        }
        return Subscription(handle: handle!, box: box)
    }

    // MARK: Groups

    func joinGroup(_ group: String, topics: [String], clientID: String = "pier-cli",
                   onAssignment: @escaping (Int64, [(topic: String, partition: Int32)]) -> Void,
                   onEnd: @escaping (PierError) -> Void) throws -> GroupMember {
        let box = GroupMember.Box(onAssignment: onAssignment, onEnd: onEnd)
        var handle: OpaquePointer?
        let cTopics = topics.map { strdup($0) }
        defer { cTopics.forEach { free($0) } }
        try clientID.withCString { cid in
            var options = pier_group_options(client_id: cid, session_timeout_ms: 0, assignor: Int32(PIER_ASSIGNOR_RANGE))
            _ = try cTopics.map { UnsafePointer($0) }.withUnsafeBufferPointer { list in
                try call { st in
                    pier_group_join(raw, group, list.baseAddress, list.count, &options, { user, generation, assignment, n, end in
                        let box = Unmanaged<GroupMember.Box>.fromOpaque(user!).takeUnretainedValue()
                        if let end {
                            box.onEnd(PierError(end.pointee))
                            return
                        }
                        box.onAssignment(generation, (0..<n).map { (cString(assignment![$0].topic), assignment![$0].partition) })
                    }, Unmanaged.passUnretained(box).toOpaque(), &handle, st)
                }
            }
        }
        return GroupMember(handle: handle!, box: box, client: self)
    }

    func committedOffset(group: String, topic: String, partition: Int32) throws -> Int64 {
        var offset: Int64 = -1
        try call { pier_log_committed_offset(raw, group, topic, partition, &offset, $0) }
        return offset
    }

    func fetchOffsets(group: String) throws -> [CommittedOffset] {
        var list = pier_offset_list()
        try call { pier_log_fetch_offsets(raw, group, nil, &list, $0) }
        defer { pier_offset_list_free(&list) }
        return (0..<list.n_offsets).map {
            CommittedOffset(topic: cString(list.offsets[$0].topic), partition: list.offsets[$0].partition, offset: list.offsets[$0].offset)
        }
    }

    func listGroups() throws -> [GroupSummary] {
        var list = pier_group_list()
        try call { pier_log_list_groups(raw, &list, $0) }
        defer { pier_group_list_free(&list) }
        return (0..<list.n_groups).map {
            let g = list.groups[$0]
            return GroupSummary(id: cString(g.group_id), state: cString(g.state), members: g.members, generation: g.generation)
        }
    }

    func describeGroup(_ id: String) throws -> GroupInfo {
        var info = pier_group_info()
        try call { pier_log_describe_group(raw, id, &info, $0) }
        defer { pier_group_info_free(&info) }
        let members = (0..<info.n_members).map { i -> GroupInfo.Member in
            let m = info.members[i]
            return GroupInfo.Member(id: cString(m.member_id), clientID: cString(m.client_id),
                                    assignment: (0..<m.n_assignment).map { (cString(m.assignment[$0].topic), m.assignment[$0].partition) })
        }
        return GroupInfo(id: cString(info.group_id), state: cString(info.state), generation: info.generation,
                         members: members, topics: (0..<info.n_topics).map { cString(info.topics[$0]) })
    }

    private func withConfigEntries(_ configs: [(String, String)], _ body: (UnsafeBufferPointer<pier_config_entry>) throws -> Void) throws {
        let keys = configs.map { strdup($0.0) }
        let values = configs.map { strdup($0.1) }
        defer {
            keys.forEach { free($0) }
            values.forEach { free($0) }
        }
        let entries = zip(keys, values).map { pier_config_entry(key: $0.0, value: $0.1) }
        try entries.withUnsafeBufferPointer { try body($0) }
    }
}

extension TopicInfo {
    init(_ info: pier_topic_info) {
        name = cString(info.topic)
        configs = (0..<info.n_configs).map { (cString(info.configs[$0].key), cString(info.configs[$0].value)) }
        partitions = (0..<info.n_partitions).map {
            let p = info.partitions[$0]
            return PartitionInfo(partition: p.partition, logStartOffset: p.log_start_offset, logEndOffset: p.log_end_offset,
                                 sizeBytes: p.size_bytes, segments: p.segments)
        }
    }
}

extension Record {
    init(_ r: pier_record) {
        self.init(partition: r.partition, offset: r.offset, timestampMs: r.timestamp_ms,
                  key: bytes(r.key, r.key_len), value: bytes(r.value, r.value_len))
    }
}

/// An open watch; the box holds the closures libpier's callback reaches through `user`.
final class Watch {
    final class Box {
        let onEvents: (Int64, [WatchEvent]) -> Void
        let onEnd: (PierError) -> Void
        init(onEvents: @escaping (Int64, [WatchEvent]) -> Void, onEnd: @escaping (PierError) -> Void) {
            self.onEvents = onEvents
            self.onEnd = onEnd
        }
    }

    private var handle: OpaquePointer?
    private let box: Box

    init(handle: OpaquePointer, box: Box) {
        self.handle = handle
        self.box = box
    }

    func cancel() {
        if let handle { pier_watch_cancel(handle) }
        handle = nil
    }

    deinit { cancel() }
}

/// A partition subscription; cancelling frees it in libpier.
final class Subscription {
    final class Box {
        let onRecords: (UnsafeBufferPointer<pier_record>, Int64) -> Void
        let onEnd: (PierError) -> Void
        var ended = false
        init(onRecords: @escaping (UnsafeBufferPointer<pier_record>, Int64) -> Void, onEnd: @escaping (PierError) -> Void) {
            self.onRecords = onRecords
            self.onEnd = onEnd
        }
    }

    private var handle: OpaquePointer?
    private let box: Box

    init(handle: OpaquePointer, box: Box) {
        self.handle = handle
        self.box = box
    }

    var ended: Bool { box.ended }

    func cancel() {
        if let handle { pier_subscription_cancel(handle) }
        handle = nil
    }

    deinit { cancel() }
}

/// A batching producer. Acks arrive through per-record callbacks inside poll()/flush().
final class Producer {
    private var handle: OpaquePointer?
    private let client: PierClient  // the producer must not outlive its client

    init(handle: OpaquePointer, client: PierClient) {
        self.handle = handle
        self.client = client
    }

    /// Sends one record; `fn` and `user` are passed to libpier's ack callback as they are.
    func send(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer, partition: Int32 = -1, timestampMs: Int64 = 0,
              fn: pier_ack_fn?, user: UnsafeMutableRawPointer?) throws {
        var record = pier_produce_record()
        record.key = key?.baseAddress
        record.key_len = key?.count ?? 0
        record.value = value.baseAddress
        record.value_len = value.count
        record.timestamp_ms = timestampMs
        try client.call { pier_producer_send(handle, partition, &record, fn, user, $0) }
    }

    func flush() throws {
        try client.call { pier_producer_flush(handle, $0) }
    }

    var pending: Int { pier_producer_pending(handle) }

    deinit { pier_producer_free(handle) }
}

/// A consumer group membership; leaving is non-blocking.
final class GroupMember {
    final class Box {
        let onAssignment: (Int64, [(topic: String, partition: Int32)]) -> Void
        let onEnd: (PierError) -> Void
        init(onAssignment: @escaping (Int64, [(topic: String, partition: Int32)]) -> Void, onEnd: @escaping (PierError) -> Void) {
            self.onAssignment = onAssignment
            self.onEnd = onEnd
        }
    }

    private var handle: OpaquePointer?
    private let box: Box
    private let client: PierClient

    init(handle: OpaquePointer, box: Box, client: PierClient) {
        self.handle = handle
        self.box = box
        self.client = client
    }

    var memberID: String { cString(pier_group_member_id(handle)) }
    var generation: Int64 { pier_group_generation(handle) }

    var assignment: [(topic: String, partition: Int32)] {
        var n = 0
        guard let list = pier_group_assignment(handle, &n) else { return [] }
        return (0..<n).map { (cString(list[$0].topic), list[$0].partition) }
    }

    func commit(_ offsets: [CommittedOffset]) throws {
        let topics = offsets.map { strdup($0.topic) }
        defer { topics.forEach { free($0) } }
        let entries = zip(offsets, topics).map {
            pier_topic_partition_offset(topic: $0.1, partition: $0.0.partition, offset: $0.0.offset, metadata: nil)
        }
        _ = try entries.withUnsafeBufferPointer { list in
            try client.call { pier_group_commit(handle, list.baseAddress, list.count, $0) }
        }
    }

    func leave() {
        if let handle { pier_group_leave(handle) }
        handle = nil
    }

    deinit { leave() }
}
