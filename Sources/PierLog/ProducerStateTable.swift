// Per-partition memory of idempotent producers' recent batches: detects retries and sequence gaps.

/// Like Kafka, each producer's last few batches are remembered so a retried batch (same
/// sequence range) is answered with its original offset instead of being stored twice, and a
/// batch that skips sequences is rejected. Only the log writer thread touches a table.
struct ProducerStateTable: Sendable {
    static let batchesKept = 5

    struct BatchRecord: Sendable, Equatable {
        var baseSequence: Int32
        var lastSequence: Int32
        var baseOffset: Int64
        var lastOffset: Int64
    }

    private(set) var producers: [Int64: [BatchRecord]] = [:]

    enum Check: Equatable {
        case append
        case duplicate(BatchRecord)
        case outOfOrder(expected: Int32)
    }

    func check(producerId: Int64, baseSequence: Int32, lastSequence: Int32) -> Check {
        guard let batches = producers[producerId], let last = batches.last else {
            // Unknown producer (new, or its batches were deleted by retention): accept any start.
            return .append
        }
        if let dup = batches.first(where: { $0.baseSequence == baseSequence && $0.lastSequence == lastSequence }) {
            return .duplicate(dup)
        }
        let expected = last.lastSequence &+ 1
        return baseSequence == expected ? .append : .outOfOrder(expected: expected)
    }

    mutating func record(producerId: Int64, _ batch: BatchRecord) {
        var batches = producers[producerId] ?? []
        batches.append(batch)
        if batches.count > Self.batchesKept { batches.removeFirst(batches.count - Self.batchesKept) }
        producers[producerId] = batches
    }

    mutating func record(header h: BatchHeader) {
        guard h.producerId >= 0 else { return }
        record(producerId: h.producerId, BatchRecord(baseSequence: h.baseSequence, lastSequence: h.lastSequence,
                                                     baseOffset: h.baseOffset, lastOffset: h.lastOffset))
    }

    // Snapshot file: count, then per producer: id, n, n × (baseSeq, lastSeq, baseOffset, lastOffset); CRC trailer.
    func encoded() -> [UInt8] {
        var out = [UInt8]()
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        put(UInt32(producers.count))
        for (id, batches) in producers.sorted(by: { $0.key < $1.key }) {
            put(id)
            put(UInt32(batches.count))
            for b in batches { put(b.baseSequence); put(b.lastSequence); put(b.baseOffset); put(b.lastOffset) }
        }
        return IndexFile.seal(out)
    }

    static func decode(_ bytes: [UInt8]) -> ProducerStateTable? {
        guard let body = IndexFile.open(bytes) else { return nil }
        var table = ProducerStateTable()
        let ok: Bool = body.withUnsafeBytes { b in
            var p = 0
            func get<T: FixedWidthInteger>(_: T.Type) -> T? {
                guard p + MemoryLayout<T>.size <= b.count else { return nil }
                defer { p += MemoryLayout<T>.size }
                return WireBytes.loadLE(b, p, as: T.self)
            }
            guard let n = get(UInt32.self) else { return false }
            for _ in 0..<n {
                guard let id = get(Int64.self), let m = get(UInt32.self) else { return false }
                var batches: [BatchRecord] = []
                for _ in 0..<m {
                    guard let bs = get(Int32.self), let ls = get(Int32.self), let bo = get(Int64.self), let lo = get(Int64.self)
                    else { return false }
                    batches.append(BatchRecord(baseSequence: bs, lastSequence: ls, baseOffset: bo, lastOffset: lo))
                }
                table.producers[id] = batches
            }
            return p == b.count
        }
        return ok ? table : nil
    }
}
