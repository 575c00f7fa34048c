// The on-disk record frame: [length u32 LE][crc32c u32 LE][payload], shared by the WAL and snapshots.
//
// The CRC covers the length field and the payload, so a torn or zeroed length is caught too
// (a zero-filled tail would otherwise look like a valid empty record: CRC-32C of nothing is 0).

public enum RecordFrame {
    public static let headerSize = 8
    /// Records larger than this are treated as corruption (a torn length field can claim gigabytes).
    public static let maxPayload = 1 << 30

    public static func checksum(length: UInt32, payload: UnsafeRawBufferPointer) -> UInt32 {
        var le = length.littleEndian
        let c = withUnsafeBytes(of: &le) { CRC32C.checksum($0) }
        return CRC32C.update(c, payload)
    }

    /// Appends one framed record to `out`.
    public static func append(_ payload: [UInt8], to out: inout [UInt8]) {
        let length = UInt32(payload.count)
        let crc = payload.withUnsafeBytes { checksum(length: length, payload: $0) }
        withUnsafeBytes(of: length.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: crc.littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: payload)
    }

    public enum Decoded {
        /// A valid record: its payload range and where the next record starts.
        case record(payload: Range<Int>, next: Int)
        /// Clean end of the buffer.
        case end
        /// Short or bad record starting at this offset (a torn tail when it is the last one).
        case invalid
    }

    /// Decodes the record starting at `offset` in `bytes`.
    public static func decode(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Decoded {
        let count = bytes.count
        if offset == count { return .end }
        guard count - offset >= headerSize else { return .invalid }
        let length = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        let crc = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
        guard Int(length) <= maxPayload, count - offset - headerSize >= Int(length) else { return .invalid }
        let start = offset + headerSize
        let end = start + Int(length)
        let payload = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
        guard checksum(length: length, payload: payload) == crc else { return .invalid }
        return .record(payload: start..<end, next: end)
    }
}
