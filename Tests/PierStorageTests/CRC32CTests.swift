// CRC-32C against published check values (RFC 3720 appendix B.4 and the usual "123456789" check).
import Testing
@testable import PierStorage

@Suite struct CRC32CTests {
    @Test func checkValue() {
        #expect(CRC32C.checksum(bytes("123456789")) == 0xE306_9283)
    }

    @Test func rfc3720Vectors() {
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }) == 0x113F_DB5C)
    }

    @Test func emptyIsZero() {
        #expect(CRC32C.checksum([]) == 0)
    }

    @Test func incrementalEqualsOneShot() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let whole = CRC32C.checksum(data)
        for split in [0, 1, 3, 7, 8, 9, 500, 999, 1000] {
            let a = CRC32C.checksum(Array(data[..<split]))
            #expect(CRC32C.update(a, Array(data[split...])) == whole)
        }
    }

    @Test func slicingMatchesBytewise() {
        // Reference: the plain bit-at-a-time definition.
        func reference(_ d: [UInt8]) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for b in d {
                c ^= UInt32(b)
                for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            }
            return ~c
        }
        for n in [1, 5, 8, 15, 16, 17, 63, 64, 65, 257] {
            let d = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 3) }
            #expect(CRC32C.checksum(d) == reference(d))
        }
    }
}

@Suite struct RecordFrameTests {
    @Test func roundTripAndCorruption() {
        var buf: [UInt8] = []
        RecordFrame.append(bytes("hello"), to: &buf)
        RecordFrame.append([], to: &buf)
        RecordFrame.append(bytes("world!"), to: &buf)
        var payloads: [[UInt8]] = []
        var offset = 0
        buf.withUnsafeBytes { raw in
            while case .record(let r, let next) = RecordFrame.decode(raw, at: offset) {
                payloads.append(Array(buf[r]))
                offset = next
            }
        }
        #expect(payloads == [bytes("hello"), [], bytes("world!")])
        #expect(offset == buf.count)

        var flipped = buf
        flipped[RecordFrame.headerSize + 1] ^= 0x40
        let first = flipped.withUnsafeBytes { RecordFrame.decode($0, at: 0) }
        guard case .invalid = first else {
            Issue.record("a flipped payload byte must fail the CRC")
            return
        }
        let zeros = [UInt8](repeating: 0, count: 16)
        let z = zeros.withUnsafeBytes { RecordFrame.decode($0, at: 0) }
        guard case .invalid = z else {
            Issue.record("a zero-filled tail must not decode as a record")
            return
        }
    }

    @Test func binaryCodingRoundTrip() throws {
        var w = BinaryWriter()
        w.writeVarInt(-1)
        w.writeVarInt(Int64.min)
        w.writeVarInt(Int64.max)
        w.writeVarUInt(300)
        w.writeBytes(bytes("abc"))
        w.writeUInt32LE(0xDEAD_BEEF)
        w.writeBool(true)
        var r = BinaryReader(w.bytes)
        #expect(try r.readVarInt() == -1)
        #expect(try r.readVarInt() == Int64.min)
        #expect(try r.readVarInt() == Int64.max)
        #expect(try r.readVarUInt() == 300)
        #expect(try r.readBytes() == bytes("abc"))
        #expect(try r.readUInt32LE() == 0xDEAD_BEEF)
        #expect(try r.readBool())
        #expect(r.isAtEnd)
        #expect(throws: StorageError.self) { try r.readUInt8() }
    }
}
