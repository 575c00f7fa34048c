// What a handler knows about the call it serves: method, metadata, deadline, peer.
import NIOCore

/// The `/package.Service/Method` path of a call.
public struct MethodPath: Sendable, Hashable, CustomStringConvertible {
    public var service: String
    public var method: String

    public init(service: String, method: String) {
        self.service = service
        self.method = method
    }

    /// Parses `/service/method`; nil when the path is not of that shape.
    public init?(path: String) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].isEmpty, !parts[1].isEmpty, !parts[2].isEmpty else { return nil }
        self.service = String(parts[1])
        self.method = String(parts[2])
    }

    public var description: String { "/\(service)/\(method)" }
}

/// Per-call facts handed to every handler.
public struct CallContext: Sendable {
    public let path: MethodPath
    public let metadata: Metadata
    /// When the client's `grpc-timeout` runs out; the gateway ends the call with
    /// DEADLINE_EXCEEDED then, and cancels the handler.
    public let deadline: NIODeadline?
    /// The peer's address, e.g. `127.0.0.1:53122`.
    public let peer: String
    /// The common name of the peer's verified TLS client certificate, when there is one.
    public let peerCommonName: String?
    /// The event loop that owns this call's connection.
    public let eventLoop: any EventLoop

    public init(path: MethodPath, metadata: Metadata, deadline: NIODeadline?, peer: String,
                peerCommonName: String?, eventLoop: any EventLoop) {
        self.path = path
        self.metadata = metadata
        self.deadline = deadline
        self.peer = peer
        self.peerCommonName = peerCommonName
        self.eventLoop = eventLoop
    }
}
