// Turns a pier.log.v1.ProduceRequest into stored batches, appends them, and gathers the acks.
import CProtobufC
import PierGRPC
import PierLog
import PierProto
import Synchronization

/// What became of one batch (or, for a by-key batch, of its share on one partition).
struct ProduceOutcome: Sendable {
    var batchIndex: Int
    var partition: Int32
    var recordCount: Int32
    var result: Result<AppendResult, GRPCStatus>
}

/// A decoded produce request: every record already encoded into the batch bytes the
/// partition will store, so appending copies no record and allocates nothing per record.
struct ProducePlan: Sendable {
    struct Append: Sendable {
        var batchIndex: Int
        var partition: Int32
        var batch: EncodedBatch
    }

    var topic: String
    var requestId: UInt64
    var appends: [Append]

    /// Decodes and validates a request. Errors that make the whole request meaningless
    /// (malformed, unknown topic or partition, misuse of idempotence) are thrown, so nothing
    /// of the request is stored; errors of one batch at append time come back in its result.
    static func decode(_ bytes: [UInt8], engine: LogEngine) throws -> ProducePlan {
        try WireMessage.decode(bytes, as: "pier.log.v1.ProduceRequest",
                               unpack: pier__log__v1__produce_request__unpack,
                               free: pier__log__v1__produce_request__free_unpacked) { m in
            let r = m.pointee
            let topic = try LogDecode.topic(r.topic)
            let partitions = try engine.partitionCount(topic)
            try logRequire(r.producer_id >= 0, "producer_id \(r.producer_id) is negative; use 0 or an id from InitProducer")
            let idempotent = r.producer_id > 0
            try logRequire(r.n_batches > 0, "a produce request needs at least one batch")
            var appends: [Append] = []
            appends.reserveCapacity(r.n_batches)
            for i in 0..<r.n_batches {
                let b = r.batches[i]!.pointee
                try logRequire(b.n_records > 0, "batch \(i) has no records")
                let records = UnsafeBufferPointer(start: b.records, count: b.n_records)
                switch b.partitioning {
                case PIER__LOG__V1__PARTITIONING__PARTITIONING_EXPLICIT:
                    guard b.partition >= 0, b.partition < partitions else {
                        throw LogError.partitionNotFound(topic: topic, partition: b.partition, partitions: partitions)
                    }
                    if idempotent {
                        try logRequire(b.base_sequence >= 0, "batch \(i): base_sequence \(b.base_sequence) is negative")
                    }
                    var builder = engine.makeBatchBuilder(capacity: encodedSizeHint(records))
                    for record in records { append(record!, to: &builder) }
                    appends.append(Append(batchIndex: i, partition: b.partition,
                                          batch: builder.build(producerId: idempotent ? r.producer_id : -1,
                                                               baseSequence: idempotent ? b.base_sequence : -1)))
                case PIER__LOG__V1__PARTITIONING__PARTITIONING_ROUND_ROBIN:
                    try logRequire(!idempotent, "batch \(i): an idempotent producer must use explicit partitioning (sequences are per partition)")
                    var builder = engine.makeBatchBuilder(capacity: encodedSizeHint(records))
                    for record in records { append(record!, to: &builder) }
                    appends.append(Append(batchIndex: i, partition: try engine.nextRoundRobinPartition(topic: topic),
                                          batch: builder.build()))
                case PIER__LOG__V1__PARTITIONING__PARTITIONING_BY_KEY:
                    try logRequire(!idempotent, "batch \(i): an idempotent producer must use explicit partitioning (sequences are per partition)")
                    // One builder per partition, in order of first appearance; keyless records of
                    // the batch stay together on one round-robin partition (Kafka's sticky choice).
                    var order: [Int32] = []
                    var builders: [Int32: RecordBatchBuilder] = [:]
                    var keyless: Int32? = nil
                    for record in records {
                        let key = record!.pointee.key
                        let partition: Int32
                        if key.len > 0 {
                            partition = (Murmur2.hash(UnsafeRawBufferPointer(start: key.data, count: key.len)) & 0x7FFF_FFFF) % partitions
                        } else {
                            if keyless == nil { keyless = try engine.nextRoundRobinPartition(topic: topic) }
                            partition = keyless!
                        }
                        if builders[partition] == nil {
                            order.append(partition)
                            builders[partition] = engine.makeBatchBuilder(capacity: encodedSizeHint(records) / max(1, Int(partitions)))
                        }
                        append(record!, to: &builders[partition]!)
                    }
                    for partition in order {
                        appends.append(Append(batchIndex: i, partition: partition, batch: builders.removeValue(forKey: partition)!.build()))
                    }
                default:
                    throw GRPCStatus(.invalidArgument, "batch \(i): unknown partitioning \(b.partitioning.rawValue)")
                }
            }
            return ProducePlan(topic: topic, requestId: r.request_id, appends: appends)
        }
    }

    /// Appends every batch; `completion` runs once, on the log writer's thread, after all of
    /// them are durable or failed, with the outcomes in request order.
    func submit(to engine: LogEngine, completion: @escaping @Sendable ([ProduceOutcome]) -> Void) {
        let gather = OutcomeGather(count: appends.count, completion: completion)
        for (slot, a) in appends.enumerated() {
            let index = a.batchIndex, partition = a.partition, count = a.batch.recordCount
            engine.append(topic: topic, partition: partition, batch: a.batch) { result in
                gather.set(slot, ProduceOutcome(batchIndex: index, partition: partition, recordCount: count,
                                                result: result.mapError { $0.grpcStatus }))
            }
        }
    }

    private static func append(_ record: UnsafeMutablePointer<Pier__Log__V1__Record>, to builder: inout RecordBatchBuilder) {
        let r = record.pointee
        let key = UnsafeRawBufferPointer(start: r.key.data, count: r.key.len)
        let value: UnsafeRawBufferPointer? = r.tombstone != 0 ? nil : UnsafeRawBufferPointer(start: r.value.data, count: r.value.len)
        var headers: [RecordHeader] = []
        if r.n_headers > 0 {
            headers.reserveCapacity(r.n_headers)
            for i in 0..<r.n_headers {
                let h = r.headers[i]!.pointee
                headers.append(RecordHeader(key: h.key.bytes, value: h.value.bytes))
            }
        }
        builder.append(key: key, value: value, timestampMs: r.timestamp_ms, headers: headers)
    }

    /// Roughly the encoded size of the records, so a batch buffer is allocated once.
    private static func encodedSizeHint(_ records: UnsafeBufferPointer<UnsafeMutablePointer<Pier__Log__V1__Record>?>) -> Int {
        var total = 0
        for record in records {
            let r = record!.pointee
            total += r.key.len + r.value.len + 24
        }
        return total
    }
}

/// Collects one outcome per append and calls back once with all of them.
private final class OutcomeGather: Sendable {
    private let state: Mutex<(outcomes: [ProduceOutcome?], left: Int)>
    private let completion: @Sendable ([ProduceOutcome]) -> Void

    init(count: Int, completion: @escaping @Sendable ([ProduceOutcome]) -> Void) {
        state = Mutex((Array(repeating: nil, count: count), count))
        self.completion = completion
    }

    func set(_ slot: Int, _ outcome: ProduceOutcome) {
        let done: [ProduceOutcome]? = state.withLock { s in
            s.outcomes[slot] = outcome
            s.left -= 1
            return s.left == 0 ? s.outcomes.map { $0! } : nil
        }
        if let done { completion(done) }
    }
}
