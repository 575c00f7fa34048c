// Unit tests for request/response metadata and the base64 of -bin values.
import Testing
@testable import PierGRPC

@Suite struct MetadataTests {
    @Test func keysAreLowerCasedAndLookedUp() {
        var metadata = Metadata()
        metadata.append("X-Request-ID", "abc")
        #expect(metadata["x-request-id"] == "abc")
        #expect(metadata["X-Request-ID"] == nil)
        #expect(metadata.count == 1)
        #expect(!metadata.isEmpty)
        #expect(Metadata().isEmpty)
    }

    @Test func repeatedKeysKeepOrder() {
        var metadata = Metadata()
        metadata.append("k", "1")
        metadata.append("other", "x")
        metadata.append("k", "2")
        #expect(metadata["k"] == "1")
        #expect(metadata.values("k").map(\.text) == ["1", "2"])
        #expect(metadata.map(\.key) == ["k", "other", "k"])
    }

    @Test func binaryValuesKeepTheirBytes() {
        var metadata = Metadata()
        let bytes: [UInt8] = [0, 1, 0xFE, 0xFF, 0x80]
        metadata.append("trace-bin", bytes: bytes)
        #expect(metadata.bytes("trace-bin") == bytes)
        #expect(metadata.values("trace-bin").first?.isBinary == true)
        metadata.append("plain", "v")
        #expect(metadata.values("plain").first?.isBinary == false)
    }

    @Test(arguments: [
        ([UInt8](), ""),
        ([0x66], "Zg"),
        ([0x66, 0x6F], "Zm8"),
        ([0x66, 0x6F, 0x6F], "Zm9v"),
        ([0x66, 0x6F, 0x6F, 0x62, 0x61, 0x72], "Zm9vYmFy"),
        ([0x00, 0xFF, 0xFE], "AP/+"),
    ])
    func base64EncodesWithoutPadding(bytes: [UInt8], text: String) {
        #expect(Base64.encode(bytes) == text)
        #expect(Base64.decode(Array(text.utf8)) == bytes)
    }

    @Test func base64DecodesPaddedAndUrlSafe() {
        #expect(Base64.decode(Array("Zg==".utf8)) == [0x66])
        #expect(Base64.decode(Array("Zm8=".utf8)) == [0x66, 0x6F])
        #expect(Base64.decode(Array("AP_-".utf8)) == [0x00, 0xFF, 0xFE])
    }

    @Test func base64RejectsForeignCharacters() {
        #expect(Base64.decode(Array("Zm9v!".utf8)) == nil)
        #expect(Base64.decode(Array("Zm 9v".utf8)) == nil)
    }

    @Test func base64RoundTripsEveryByte() {
        let bytes = (0...255).map { UInt8($0) }
        for length in 0...bytes.count {
            let prefix = Array(bytes.prefix(length))
            #expect(Base64.decode(Array(Base64.encode(prefix).utf8)) == prefix)
        }
    }
}
