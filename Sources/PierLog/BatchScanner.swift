// Walks the frames of a segment file sequentially in large reads (recovery, cleaning, time lookups).

enum ScanEnd: Equatable {
    /// Every byte up to the end was whole, valid frames.
    case complete
    /// The frame at this position is cut short: a torn write.
    case truncated(at: Int)
    /// The frame at this position is not a valid batch.
    case corrupt(at: Int, reason: String)
    /// The visitor asked to stop before this position.
    case stopped(at: Int)
}

enum BatchScanner {
    private enum Outcome { case next, stop, badCRC }
    static let chunkSize = 1 << 20

    /// Calls `visit(header, position, frameBytes)` for each frame in [from, to). Return false to stop.
    @discardableResult
    static func scan(_ file: LogFile, from: Int, to end: Int, verifyCRC: Bool,
                     _ visit: (BatchHeader, Int, UnsafeRawBufferPointer) throws -> Bool) throws -> ScanEnd {
        var pos = from
        var chunk: [UInt8] = []
        var chunkStart = from
        while pos < end {
            // Make sure the frame at `pos` has at least its header in memory.
            var rel = pos - chunkStart
            if rel < 0 || rel + BatchLayout.framePrefixReserve + BatchLayout.headerSize > chunk.count {
                chunk = try file.read(count: min(chunkSize, end - pos), at: pos)
                chunkStart = pos
                rel = 0
            }
            let header: BatchHeader
            do {
                header = try chunk.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws in
                    try BatchFrame.parseHeader(UnsafeRawBufferPointer(rebasing: b[rel...]), at: 0, verifyCRC: false)
                }
            } catch FrameError.truncated {
                return .truncated(at: pos)
            } catch FrameError.corrupt(let why) {
                return .corrupt(at: pos, reason: why)
            }
            if pos + header.frameSize > end { return .truncated(at: pos) }
            if rel + header.frameSize > chunk.count {
                chunk = try file.read(count: max(min(chunkSize, end - pos), header.frameSize), at: pos)
                chunkStart = pos
                rel = 0
                if chunk.count < header.frameSize { return .truncated(at: pos) }
            }
            let h = header
            let outcome: Outcome = try chunk.withUnsafeBytes { b in
                let frame = UnsafeRawBufferPointer(rebasing: b[rel..<(rel + h.frameSize)])
                if verifyCRC, (try? BatchFrame.parseHeader(frame, at: 0, verifyCRC: true)) == nil { return .badCRC }
                return try visit(h, pos, frame) ? .next : .stop
            }
            switch outcome {
            case .next: break
            case .stop: return .stopped(at: pos)
            case .badCRC: return .corrupt(at: pos, reason: "CRC mismatch")
            }
            pos += header.frameSize
        }
        return .complete
    }
}
