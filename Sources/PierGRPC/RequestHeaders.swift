// Sorts request header fields into gRPC's own (path, content-type, timeout, ...) and metadata.

enum RequestHeaders {
    /// Header fields that belong to HTTP/2 or gRPC itself, never handed to handlers as metadata.
    private static let reserved: Set<String> = [
        "content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
        "grpc-message-type", "content-length", "connection", "host",
    ]

    static func apply(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>, to stream: ServerStream) {
        let key = String(decoding: name, as: UTF8.self)
        if key.hasPrefix(":") {
            switch key {
            case ":method": stream.method = String(decoding: value, as: UTF8.self)
            case ":path": stream.path = String(decoding: value, as: UTF8.self)
            default: break
            }
            return
        }
        switch key {
        case "content-type": stream.contentType = String(decoding: value, as: UTF8.self)
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

    /// `application/grpc`, optionally followed by `+format` or `;parameters`.
    static func isGRPCContentType(_ value: String) -> Bool {
        let lower = value.lowercased()
        guard lower.hasPrefix("application/grpc") else { return false }
        let rest = lower.dropFirst("application/grpc".count)
        return rest.isEmpty || rest.hasPrefix("+") || rest.hasPrefix(";")
    }
}

/// The fixed response header blocks, built once.
enum ResponseHeaders {
    static let ok: HeaderList = {
        var headers = HeaderList()
        headers.add(":status", "200")
        headers.add("content-type", "application/grpc")
        headers.add("grpc-accept-encoding", "identity")
        return headers
    }()

    static let okTrailers: HeaderList = {
        var trailers = HeaderList()
        trailers.add("grpc-status", "0")
        return trailers
    }()
}
