// Tests of the gzip message encoding: round trip, corrupt input, and the decompression bound.
import Testing
@testable import PierGRPC

@Suite struct GzipTests {
    @Test func roundTrip() throws {
        let text = Array(String(repeating: "pier gzip ", count: 5000).utf8)
        let packed = Gzip.compress(text)
        #expect(packed.count < text.count / 10)
        #expect(try Gzip.decompress(packed, limit: 1 << 20) == text)
    }

    @Test func emptyMessage() throws {
        #expect(try Gzip.decompress(Gzip.compress([]), limit: 16) == [])
    }

    @Test func refusesCorruptInput() {
        #expect(throws: Gzip.Failure.corrupt) { try Gzip.decompress([1, 2, 3, 4, 5], limit: 1024) }
        var packed = Gzip.compress(Array(repeating: 7, count: 1000))
        packed.removeLast(10)
        #expect(throws: Gzip.Failure.corrupt) { try Gzip.decompress(packed, limit: 1 << 20) }
    }

    @Test func refusesOutputBeyondLimit() {
        // 8 MiB of zeros compresses to a few KiB: a bomb must be stopped at the limit.
        let bomb = Gzip.compress([UInt8](repeating: 0, count: 8 << 20))
        #expect(throws: Gzip.Failure.tooLarge(limit: 1 << 20)) { try Gzip.decompress(bomb, limit: 1 << 20) }
    }
}
