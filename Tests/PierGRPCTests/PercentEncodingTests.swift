// Unit tests for the percent-encoding of grpc-message.
import Testing
@testable import PierGRPC

@Suite struct PercentEncodingTests {
    @Test func printableAsciiIsUnchanged() {
        let text = "key not found: foo/bar (rev 42) ~!@#$^&*()_+"
        #expect(PercentEncoding.encode(text) == text)
    }

    @Test func percentAndNonAsciiAreEncodedUpperCase() {
        #expect(PercentEncoding.encode("100%") == "100%25")
        #expect(PercentEncoding.encode("line\nbreak") == "line%0Abreak")
        #expect(PercentEncoding.encode("é") == "%C3%A9")
        #expect(PercentEncoding.encode("\u{7F}") == "%7F")
    }

    @Test(arguments: ["", "plain", "100% sure", "tab\tnew\nline", "日本語 ✓", "%%%", "a%2Gb"])
    func roundTrips(text: String) {
        #expect(PercentEncoding.decode(PercentEncoding.encode(text)) == text)
    }

    @Test func decodesBothHexCases() {
        #expect(PercentEncoding.decode("%c3%a9") == "é")
        #expect(PercentEncoding.decode("%C3%A9") == "é")
    }

    @Test func malformedSequencesAreKept() {
        #expect(PercentEncoding.decode("50%") == "50%")
        #expect(PercentEncoding.decode("%4") == "%4")
        #expect(PercentEncoding.decode("%zz ok") == "%zz ok")
        #expect(PercentEncoding.decode("%%41") == "%A")
    }
}
