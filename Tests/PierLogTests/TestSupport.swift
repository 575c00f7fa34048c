// Shared helpers for the log engine tests: temporary directories, a manual clock, engine set-up.

import Foundation
import Synchronization
@testable import PierLog

final class ManualClock: Sendable {
    let now: Atomic<Int64>
    init(_ start: Int64 = 1_700_000_000_000) { now = Atomic(start) }
    func advance(_ ms: Int64) { now.add(ms, ordering: .relaxed) }
    var ms: Int64 { now.load(ordering: .relaxed) }
}

func makeTempDir(_ name: String = "pierlog") -> String {
    let path = NSTemporaryDirectory() + "\(name)-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func removeDir(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

/// An engine in `dir` with timers off (tests drive the clock, tick and maintenance).
func openEngine(_ dir: String, clock: ManualClock? = nil) throws -> LogEngine {
    var options = LogEngine.Options()
    options.maintenanceIntervalMs = 0
    options.tickIntervalMs = 0
    if let clock { options.clock = { clock.ms } }
    let store = try FileLogMetadataStore(path: dir + "/metadata.log")
    return try LogEngine(directory: dir + "/data", metadata: store, options: options)
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

func rec(_ key: String?, _ value: String?, ts: Int64 = 0) -> Record {
    Record(key: key.map(bytes), value: value.map(bytes), timestampMs: ts)
}

extension LogEngine {
    /// Produces and waits; fails the test on error.
    func produceOK(_ topic: String, _ records: [Record], partition: Int32 = 0,
                   producerId: Int64 = -1, baseSequence: Int32 = -1) async throws -> AppendResult {
        let results = await produce(topic: topic, records: records, partitioning: .explicit(partition),
                                    producerId: producerId, baseSequence: baseSequence)
        return try results[0].result.get()
    }

    /// Every record from `offset` to the high watermark.
    func readAll(_ topic: String, partition: Int32 = 0, from offset: Int64? = nil) throws -> [StoredRecord] {
        var next = try offset ?? listOffsets(topic: topic, partitions: [partition], spec: .earliest)[0].offset
        var out: [StoredRecord] = []
        while true {
            let r = try read(topic: topic, partition: partition, offset: next, maxBytes: 64 * 1024)
            if r.records.isEmpty { break }
            out += try RecordBatchReader.records(in: Array(r.records), fromOffset: next)
            next = r.nextOffset
        }
        return out
    }
}
