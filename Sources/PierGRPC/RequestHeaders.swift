// Sorts request header fields into gRPC's own (path, content-type, timeout, ...) and metadata.

enum RequestHeaders {
    /// Header fields that belong to HTTP/2 or gRPC itself, never handed to handlers as metadata.
    private static let reserved: Set<String> = [
        "content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
        "grpc-message-type", "content-length", "connection", "host",
    ]

    static func apply(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>, to stream: ServerStream) {
        // The fields every call carries are matched on bytes, without building Strings.
        if name.first == UInt8(ascii: ":") {
            if name.elementsEqual(":path".utf8) {
                stream.path = String(decoding: value, as: UTF8.self)
            } else if name.elementsEqual(":method".utf8) {
                stream.isPost = value.elementsEqual("POST".utf8)
                if !stream.isPost { stream.method = String(decoding: value, as: UTF8.self) }
            }
            return
        }
        if name.elementsEqual("te".utf8) { return }
        if name.elementsEqual("content-type".utf8) {
            stream.hasGRPCContentType = isGRPCContentType(value)
            if !stream.hasGRPCContentType { stream.contentType = String(decoding: value, as: UTF8.self) }
            return
        }
        let key = String(decoding: name, as: UTF8.self)
        switch key {
        case "grpc-timeout": stream.timeout = String(decoding: value, as: UTF8.self)
        case "grpc-encoding": stream.encoding = String(decoding: value, as: UTF8.self)
        default:
            guard !reserved.contains(key) else { return }
            if key.hasSuffix("-bin") {
                // An undecodable binary value is dropped rather than failing the call.
                if let bytes = Base64.decode(value) { stream.metadata.append(key, bytes: bytes) }
            } else {
                stream.metadata.append(key, bytes: Array(value))
            }
        }
    }

    /// `application/grpc`, optionally followed by `+format` or `;parameters` (case-insensitive).
    static func isGRPCContentType(_ value: UnsafeBufferPointer<UInt8>) -> Bool {
        let prefix = "application/grpc".utf8
        guard value.count >= prefix.count,
              zip(value.prefix(prefix.count), prefix).allSatisfy({ $0 | 0x20 == $1 | 0x20 }) else { return false }
        guard value.count > prefix.count else { return true }
        let next = value[prefix.count]
        return next == UInt8(ascii: "+") || next == UInt8(ascii: ";")
    }
}

/// The fixed response header blocks, built once.
enum ResponseHeaders {
    static let ok = StaticHeaderBlock([
        (":status", "200"), ("content-type", "application/grpc"), ("grpc-accept-encoding", "identity,gzip"),
    ])
    static let okTrailers = StaticHeaderBlock([("grpc-status", "0")])
}
