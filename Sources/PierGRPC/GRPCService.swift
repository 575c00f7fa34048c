// How services plug into the gateway: a name and a table of methods.
import NIOCore

/// A gRPC service: its fully qualified name (`package.Service`) and its methods by name.
public protocol GRPCService: Sendable {
    var serviceName: String { get }
    var methods: [String: GRPCMethod] { get }
}

/// One method's handler. Messages are the serialized protobuf bytes; framing, compression,
/// deadlines, flow control and status trailers are the gateway's business.
public enum GRPCMethod: Sendable {
    /// A unary call handled without a task: runs on the connection's event loop (so it must
    /// not block) and completes through `responder`, from any thread, now or later. The fast
    /// path for cheap calls and for writes that complete from the storage writer.
    case unary(@Sendable (CallContext, [UInt8], UnaryResponder) -> Void)
    /// A unary call handled in a task (may suspend). Cancelled on deadline or RST_STREAM.
    case asyncUnary(@Sendable (CallContext, [UInt8]) async throws -> [UInt8])
    /// Client, server or bidirectional streaming: each request message is handed over as it
    /// arrives through `RequestStream`; `ResponseWriter.send` suspends while the peer is not
    /// reading (bounded buffer). Returning ends the call with OK; throwing a `GRPCStatus` ends
    /// it with that status. The task is cancelled on deadline or RST_STREAM.
    case streaming(@Sendable (CallContext, RequestStream, ResponseWriter) async throws -> Void)
}

/// Completes a `.unary` call exactly once; later completions are ignored.
public struct UnaryResponder: Sendable {
    let complete: @Sendable (Result<[UInt8], GRPCStatus>) -> Void
    let cancelled: @Sendable () -> Bool

    public init(complete: @escaping @Sendable (Result<[UInt8], GRPCStatus>) -> Void,
                cancelled: @escaping @Sendable () -> Bool = { false }) {
        self.complete = complete
        self.cancelled = cancelled
    }

    public func succeed(_ response: [UInt8]) { complete(.success(response)) }
    public func fail(_ status: GRPCStatus) { complete(.failure(status)) }
    public func complete(_ result: Result<[UInt8], GRPCStatus>) { complete(result) }
    /// True once the client reset the stream or the deadline passed: work may stop.
    public var isCancelled: Bool { cancelled() }
}
