// Swift values for pier.testing.v1 messages, converted to and from protobuf-c.
import CProtobufC
import PierProto
import PierServer

#if canImport(Glibc)
import Glibc
#endif

/// A decoded `pier.testing.v1.EchoRequest`.
struct EchoRequest: Sendable {
    var payload: [UInt8] = []
    var count: UInt32 = 0
    var delayMilliseconds: UInt32 = 0
    var failCode: UInt32 = 0
    var errorMessage: String = ""

    init(bytes: [UInt8]) throws {
        self = try ProtobufWire.decode(bytes, as: "pier.testing.v1.EchoRequest",
                                       unpack: pier__testing__v1__echo_request__unpack,
                                       free: pier__testing__v1__echo_request__free_unpacked) { message in
            var request = EchoRequest()
            request.payload = ProtobufWire.bytes(message.pointee.payload)
            request.count = message.pointee.count
            request.delayMilliseconds = message.pointee.delay_ms
            request.failCode = message.pointee.fail_code
            request.errorMessage = ProtobufWire.string(message.pointee.error_message)
            return request
        }
    }

    private init() {}
}

/// Encodes a `pier.testing.v1.EchoResponse`.
func encodeEchoResponse(payload: [UInt8], index: UInt64, metadata: [String] = []) -> [UInt8] {
    var response = Pier__Testing__V1__EchoResponse()
    pier__testing__v1__echo_response__init(&response)
    response.index = index
    // protobuf-c only reads these pointers while packing, so they need to live until then.
    var lines: [UnsafeMutablePointer<CChar>?] = metadata.map { strdup($0) }
    defer { for line in lines { free(line) } }
    return payload.withUnsafeBufferPointer { payloadBytes in
        lines.withUnsafeMutableBufferPointer { lineBuffer in
            response.payload.len = payloadBytes.count
            response.payload.data = UnsafeMutablePointer(mutating: payloadBytes.baseAddress)
            response.n_metadata = lineBuffer.count
            response.metadata = lineBuffer.count == 0 ? nil : lineBuffer.baseAddress
            return ProtobufWire.encode(&response,
                                       size: pier__testing__v1__echo_response__get_packed_size,
                                       pack: pier__testing__v1__echo_response__pack)
        }
    }
}

/// Encodes a `pier.testing.v1.SlowStats`.
func encodeSlowStats(cancelled: UInt64, completed: UInt64, residentBytes: UInt64) -> [UInt8] {
    var stats = Pier__Testing__V1__SlowStats()
    pier__testing__v1__slow_stats__init(&stats)
    stats.cancelled_calls = cancelled
    stats.completed_calls = completed
    stats.resident_bytes = residentBytes
    return ProtobufWire.encode(&stats,
                               size: pier__testing__v1__slow_stats__get_packed_size,
                               pack: pier__testing__v1__slow_stats__pack)
}

/// Checks that `bytes` is a valid `pier.testing.v1.Empty` (unknown fields are allowed).
func decodeEmpty(_ bytes: [UInt8]) throws {
    try ProtobufWire.decode(bytes, as: "pier.testing.v1.Empty",
                            unpack: pier__testing__v1__empty__unpack,
                            free: pier__testing__v1__empty__free_unpacked) { _ in }
}
