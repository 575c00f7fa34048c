// Compaction for cleanup.policy=compact: keeps only each key's latest record in sealed segments.

/// Like Kafka's LogCleaner, minus the dirty-ratio bookkeeping: one pass builds a map from
/// key to its latest offset over the whole log, then every sealed segment is rewritten
/// keeping the records that are still their key's latest. A tombstone is itself dropped once
/// older than delete.retention.ms, giving consumers that long to see the delete. Batches
/// keep their base offsets and producer fields; records keep their offsets (gaps are normal).
/// Runs on the log writer thread, so no append races with the swap of a segment file.
enum LogCleaner {
    struct Stats: Sendable, Equatable {
        var segmentsRewritten = 0
        var recordsRemoved = 0
    }

    static func clean(_ log: PartitionLog, nowMs: Int64) throws -> Stats {
        let config = log.config
        var stats = Stats()
        guard log.needsCleaning(nowMs: nowMs) else { return stats }
        let segments = log.segmentsSnapshot
        guard segments.count > 1 else { return stats }
        defer { log.didClean(nowMs: nowMs) }

        var latest: [[UInt8]: Int64] = [:]
        for seg in segments {
            try BatchScanner.scan(seg.file, from: 0, to: seg.summary.durableSize, verifyCRC: false) { h, _, frame in
                try RecordBatchReader.forEachRecord(batch: h, frame: frame, at: 0) { r in
                    if !r.key.isEmpty { latest[Array(r.key)] = r.offset }
                }
                return true
            }
        }

        let tombstoneHorizon = nowMs - config.deleteRetentionMs
        for seg in segments.dropLast() {
            let cleanedPath = seg.logPath + ".cleaned"
            let out = try LogFile(path: cleanedPath, create: true, truncate: true)
            var outSize = 0
            var removed = 0
            try BatchScanner.scan(seg.file, from: 0, to: seg.summary.durableSize, verifyCRC: false) { h, _, frame in
                var builder = RecordBatchBuilder(appendTimeMs: h.maxTimestampMs, capacity: frame.count)
                var total = 0
                try RecordBatchReader.forEachRecord(batch: h, frame: frame, at: 0) { r in
                    total += 1
                    if !r.key.isEmpty {
                        if latest[Array(r.key)] != r.offset { return }
                        if r.value == nil && r.timestampMs < tombstoneHorizon { return }
                    }
                    builder.appendRetained(r, offsetDelta: Int32(r.offset - h.baseOffset))
                }
                removed += total - builder.recordCount
                if builder.recordCount == total {
                    try out.write(frame, at: outSize)
                    outSize += frame.count
                } else if !builder.isEmpty {
                    let batch = builder.buildRetained(from: h)
                    try batch.storage.withUnsafeBytes { b in
                        try out.write(UnsafeRawBufferPointer(rebasing: b[batch.frameStart...]), at: outSize)
                    }
                    outSize += batch.frameSize
                }
                return true
            }
            guard removed > 0 else {
                LogFS.remove(cleanedPath)
                continue
            }
            // Durable copy first, then an atomic rename over the original: a crash leaves one or the other.
            try out.sync()
            try LogFS.rename(cleanedPath, seg.logPath)
            try LogFS.syncDirectory(seg.directory)
            for ext in ["index", "timeindex"] { LogFS.remove(Segment.path(seg.directory, seg.baseOffset, ext)) }
            let (fresh, _) = try Segment.open(directory: seg.directory, baseOffset: seg.baseOffset, validate: true,
                                              indexIntervalBytes: Int(config.indexIntervalBytes))
            try? fresh.writeIndexFiles()
            log.replaceSegment(seg, with: fresh)
            stats.segmentsRewritten += 1
            stats.recordsRemoved += removed
        }
        return stats
    }
}
