// Compact binary encoding helpers (little-endian fixed ints, LEB128 varints, length-prefixed bytes) for commands and snapshots.

/// Appends encoded values to a byte array. A struct so encoding a command is one growing buffer.
public struct BinaryWriter: Sendable {
    public var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inlinable public mutating func writeUInt8(_ v: UInt8) { bytes.append(v) }

    @inlinable public mutating func writeBool(_ v: Bool) { bytes.append(v ? 1 : 0) }

    @inlinable public mutating func writeUInt32LE(_ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable public mutating func writeUInt64LE(_ v: UInt64) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable public mutating func writeVarUInt(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Zig-zag so small negative numbers stay short.
    @inlinable public mutating func writeVarInt(_ v: Int64) {
        writeVarUInt(UInt64(bitPattern: (v << 1) ^ (v >> 63)))
    }

    @inlinable public mutating func writeBytes(_ b: [UInt8]) {
        writeVarUInt(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    @inlinable public mutating func writeRaw(_ b: [UInt8]) { bytes.append(contentsOf: b) }
}

/// Reads values written by `BinaryWriter`; every read checks bounds and throws `StorageError.corrupt`.
public struct BinaryReader {
    public let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var isAtEnd: Bool { offset >= bytes.count }
    public var remaining: Int { bytes.count - offset }

    @inline(__always) func truncated() -> StorageError { .corrupt("truncated record at offset \(offset)") }

    public mutating func readUInt8() throws -> UInt8 {
        guard offset < bytes.count else { throw truncated() }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readBool() throws -> Bool { try readUInt8() != 0 }

    public mutating func readUInt32LE() throws -> UInt32 {
        guard remaining >= 4 else { throw truncated() }
        let v = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
        offset += 4
        return UInt32(littleEndian: v)
    }

    public mutating func readUInt64LE() throws -> UInt64 {
        guard remaining >= 8 else { throw truncated() }
        let v = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
        offset += 8
        return UInt64(littleEndian: v)
    }

    public mutating func readVarUInt() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try readUInt8()
            if shift >= 64 { throw StorageError.corrupt("varint too long at offset \(offset)") }
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return result }
            shift += 7
        }
    }

    public mutating func readVarInt() throws -> Int64 {
        let u = try readVarUInt()
        return Int64(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }

    public mutating func readBytes() throws -> [UInt8] {
        let n = try readVarUInt()
        guard n <= UInt64(remaining) else { throw truncated() }
        let count = Int(n)
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }
}
