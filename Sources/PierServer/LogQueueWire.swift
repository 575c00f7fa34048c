// Work-queue messages (Receive, Ack, Nack) between pier.log.v1 protobuf-c structs and WorkQueues values.
import CProtobufC
import PierGRPC
import PierLog
import PierProto

enum LogQueueWire {
    struct Receive {
        var topic: String
        var queue: String
        var maxRecords: Int
        var visibilityTimeoutMs: Int64
        var maxWaitMs: Int64
    }

    struct Settle {
        var topic: String
        var queue: String
        var leases: [WorkQueues.LeaseRef]
        var redeliverAfterMs: Int64 = 0
    }

    /// More records than this per Receive would make replies larger than clients accept by default.
    static let maxRecordsPerReceive: Int32 = 10_000
    static let maxVisibilityTimeoutMs: Int32 = 12 * 3600 * 1000

    static func receive(_ bytes: [UInt8]) throws -> Receive {
        try WireMessage.decode(bytes, as: "pier.log.v1.ReceiveRequest",
                               unpack: pier__log__v1__receive_request__unpack,
                               free: pier__log__v1__receive_request__free_unpacked) { m in
            let r = m.pointee
            try logRequire(r.max_records >= 0 && r.max_records <= maxRecordsPerReceive,
                           "max_records \(r.max_records) is outside [0, \(maxRecordsPerReceive)]")
            try logRequire(r.visibility_timeout_ms >= 0 && r.visibility_timeout_ms <= maxVisibilityTimeoutMs,
                           "visibility_timeout_ms \(r.visibility_timeout_ms) is outside [0, \(maxVisibilityTimeoutMs)]")
            try logRequire(r.max_wait_ms >= 0 && r.max_wait_ms <= LogDecode.maxFetchWaitMs,
                           "max_wait_ms \(r.max_wait_ms) is outside [0, \(LogDecode.maxFetchWaitMs)]")
            let queue = wireString(r.queue)
            try logRequire(!queue.isEmpty, "queue is empty")
            return Receive(topic: try LogDecode.topic(r.topic), queue: queue,
                           maxRecords: r.max_records == 0 ? 1 : Int(r.max_records),
                           visibilityTimeoutMs: r.visibility_timeout_ms == 0 ? WorkQueues.defaultVisibilityTimeoutMs
                                                                             : Int64(r.visibility_timeout_ms),
                           maxWaitMs: Int64(r.max_wait_ms))
        }
    }

    static func ack(_ bytes: [UInt8]) throws -> Settle {
        try WireMessage.decode(bytes, as: "pier.log.v1.AckRequest",
                               unpack: pier__log__v1__ack_request__unpack,
                               free: pier__log__v1__ack_request__free_unpacked) { m in
            let r = m.pointee
            return try settle(topic: r.topic, queue: r.queue, leases: r.leases, count: r.n_leases)
        }
    }

    static func nack(_ bytes: [UInt8]) throws -> Settle {
        try WireMessage.decode(bytes, as: "pier.log.v1.NackRequest",
                               unpack: pier__log__v1__nack_request__unpack,
                               free: pier__log__v1__nack_request__free_unpacked) { m in
            let r = m.pointee
            try logRequire(r.redeliver_after_ms >= 0, "redeliver_after_ms \(r.redeliver_after_ms) is negative")
            var s = try settle(topic: r.topic, queue: r.queue, leases: r.leases, count: r.n_leases)
            s.redeliverAfterMs = Int64(r.redeliver_after_ms)
            return s
        }
    }

    private static func settle(topic: UnsafeMutablePointer<CChar>?, queue: UnsafeMutablePointer<CChar>?,
                               leases: UnsafeMutablePointer<UnsafeMutablePointer<Pier__Log__V1__LeaseRef>?>?,
                               count: Int) throws -> Settle {
        let name = wireString(queue)
        try logRequire(!name.isEmpty, "queue is empty")
        let refs = (0..<count).map { i -> WorkQueues.LeaseRef in
            let l = leases![i]!.pointee
            return WorkQueues.LeaseRef(partition: l.partition, offset: l.offset, leaseId: l.lease_id)
        }
        return Settle(topic: try LogDecode.topic(topic), queue: name, leases: refs)
    }

    // MARK: replies

    static func receiveResponse(_ records: [WorkQueues.LeasedRecord]) -> [UInt8] {
        WireArena.with { arena in
            var m = Pier__Log__V1__ReceiveResponse()
            pier__log__v1__receive_response__init(&m)
            let array = arena.pointers(Pier__Log__V1__LeasedRecord.self, count: records.count)
            for (i, leased) in records.enumerated() {
                let l = arena.message(Pier__Log__V1__LeasedRecord.self, pier__log__v1__leased_record__init)
                l.pointee.partition = leased.partition
                l.pointee.offset = leased.offset
                l.pointee.record = record(leased.record, arena)
                l.pointee.attempt = leased.attempt
                l.pointee.lease_expires_ms = leased.leaseExpiresMs
                l.pointee.lease_id = leased.leaseId
                array[i] = l
            }
            m.n_records = records.count
            m.records = array
            return WireMessage.encode(&m, size: pier__log__v1__receive_response__get_packed_size,
                                      pack: pier__log__v1__receive_response__pack)
        }
    }

    private static func record(_ r: Record, _ arena: WireArena) -> UnsafeMutablePointer<Pier__Log__V1__Record> {
        let m = arena.message(Pier__Log__V1__Record.self, pier__log__v1__record__init)
        m.pointee.key = arena.bytes(r.key ?? [])
        m.pointee.value = arena.bytes(r.value ?? [])
        m.pointee.tombstone = r.value == nil ? 1 : 0
        m.pointee.timestamp_ms = r.timestampMs
        let headers = arena.pointers(Pier__Log__V1__RecordHeader.self, count: r.headers.count)
        for (i, h) in r.headers.enumerated() {
            let hm = arena.message(Pier__Log__V1__RecordHeader.self, pier__log__v1__record_header__init)
            hm.pointee.key = arena.bytes(h.key)
            hm.pointee.value = arena.bytes(h.value)
            headers[i] = hm
        }
        m.pointee.n_headers = r.headers.count
        m.pointee.headers = r.headers.isEmpty ? nil : headers
        return m
    }

    static func ackResponse(acked: Int, stale: [WorkQueues.LeaseRef]) -> [UInt8] {
        WireArena.with { arena in
            var m = Pier__Log__V1__AckResponse()
            pier__log__v1__ack_response__init(&m)
            m.acked = Int32(clamping: acked)
            (m.n_stale, m.stale) = leaseRefs(stale, arena)
            return WireMessage.encode(&m, size: pier__log__v1__ack_response__get_packed_size,
                                      pack: pier__log__v1__ack_response__pack)
        }
    }

    static func nackResponse(nacked: Int, stale: [WorkQueues.LeaseRef]) -> [UInt8] {
        WireArena.with { arena in
            var m = Pier__Log__V1__NackResponse()
            pier__log__v1__nack_response__init(&m)
            m.nacked = Int32(clamping: nacked)
            (m.n_stale, m.stale) = leaseRefs(stale, arena)
            return WireMessage.encode(&m, size: pier__log__v1__nack_response__get_packed_size,
                                      pack: pier__log__v1__nack_response__pack)
        }
    }

    private static func leaseRefs(_ refs: [WorkQueues.LeaseRef], _ arena: WireArena)
        -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<Pier__Log__V1__LeaseRef>?>?) {
        guard !refs.isEmpty else { return (0, nil) }
        let array = arena.pointers(Pier__Log__V1__LeaseRef.self, count: refs.count)
        for (i, ref) in refs.enumerated() {
            let l = arena.message(Pier__Log__V1__LeaseRef.self, pier__log__v1__lease_ref__init)
            l.pointee.partition = ref.partition
            l.pointee.offset = ref.offset
            l.pointee.lease_id = ref.leaseId
            array[i] = l
        }
        return (refs.count, array)
    }
}
