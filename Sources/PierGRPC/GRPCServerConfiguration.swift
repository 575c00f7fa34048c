// Limits and addresses of the gRPC front end.

public struct GRPCServerConfiguration: Sendable {
    public var host: String = "127.0.0.1"
    /// 0 picks a free port (see `GRPCServer.boundPort`).
    public var port: Int = 2379
    /// Larger request messages end the call with RESOURCE_EXHAUSTED.
    public var maxReceiveMessageBytes: Int = 4 * 1024 * 1024
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to each client.
    public var maxConcurrentStreams: UInt32 = 4096
    /// Connections beyond this are closed as soon as they are accepted.
    public var maxConnections: Int = 10_000
    /// Response bytes queued per stream before `ResponseWriter.send` suspends.
    public var streamOutboundHighWater: Int = 256 * 1024
    /// Request bytes queued per stream, not yet taken by the handler, before the gateway stops
    /// opening the HTTP/2 window for it.
    public var streamInboundHighWater: Int = 1024 * 1024
    /// HTTP/2 initial window per stream (SETTINGS_INITIAL_WINDOW_SIZE).
    public var initialWindowSize: UInt32 = 1024 * 1024
    /// Total bytes of header fields accepted per request.
    public var maxHeaderListBytes: Int = 16 * 1024
    /// How long in-flight calls may run after a graceful shutdown starts.
    public var shutdownGraceSeconds: Double = 10
    /// Event loop threads; default one per core.
    public var eventLoopThreads: Int = System.coreCount

    public init() {}
}

import NIOCore
