// Protobuf-compatible varints and little-endian fixed-width fields, the primitives of the batch format.

enum WireBytes {
    @inline(__always)
    static func varintSize(_ v: UInt64) -> Int {
        var v = v
        var n = 1
        while v >= 0x80 { v >>= 7; n += 1 }
        return n
    }

    @inline(__always)
    static func appendVarint(_ v: UInt64, to out: inout [UInt8]) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    /// Writes a varint at `at` and returns the number of bytes written.
    @inline(__always)
    static func writeVarint(_ v: UInt64, to p: UnsafeMutableRawPointer) -> Int {
        var v = v
        var n = 0
        while v >= 0x80 {
            p.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, toByteOffset: n, as: UInt8.self)
            v >>= 7
            n += 1
        }
        p.storeBytes(of: UInt8(v), toByteOffset: n, as: UInt8.self)
        return n + 1
    }

    /// Reads a varint at `pos`, advancing it; nil when truncated or longer than 10 bytes.
    @inline(__always)
    static func readVarint(_ b: UnsafeRawBufferPointer, _ pos: inout Int, end: Int) -> UInt64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while pos < end && shift < 64 {
            let byte = b[pos]
            pos += 1
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
        }
        return nil
    }

    @inline(__always)
    static func storeLE<T: FixedWidthInteger>(_ v: T, _ b: UnsafeMutableRawBufferPointer, _ at: Int) {
        b.storeBytes(of: v.littleEndian, toByteOffset: at, as: T.self)
    }

    @inline(__always)
    static func loadLE<T: FixedWidthInteger>(_ b: UnsafeRawBufferPointer, _ at: Int, as: T.Type) -> T {
        T(littleEndian: b.loadUnaligned(fromByteOffset: at, as: T.self))
    }
}
