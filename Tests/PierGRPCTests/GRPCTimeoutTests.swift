// Unit tests for parsing the grpc-timeout header.
import Testing
@testable import PierGRPC

@Suite struct GRPCTimeoutTests {
    @Test(arguments: [
        ("1H", Int64(3_600_000_000_000)),
        ("2M", Int64(120_000_000_000)),
        ("3S", Int64(3_000_000_000)),
        ("250m", Int64(250_000_000)),
        ("7u", Int64(7_000)),
        ("99999999n", Int64(99_999_999)),
        ("0m", Int64(0)),
        ("00000001S", Int64(1_000_000_000)),
    ])
    func parsesEachUnit(value: String, nanoseconds: Int64) {
        #expect(GRPCTimeout.parse(value) == nanoseconds)
    }

    @Test(arguments: [
        "",            // empty
        "S",           // no digits
        "10",          // no unit
        "10s",         // units are case-sensitive: 's' is not seconds
        "10x",         // unknown unit
        "-1S",         // sign
        "1.5S",        // fraction
        " 1S",         // whitespace
        "123456789S",  // nine digits: the spec allows at most eight
        "1S ",         // trailing space
    ])
    func rejectsMalformed(value: String) {
        #expect(GRPCTimeout.parse(value) == nil)
    }

    @Test func largestHoursSaturateInsteadOfOverflowing() {
        let parsed = GRPCTimeout.parse("99999999H")
        #expect(parsed != nil)
        #expect(parsed! > 0)
    }
}
