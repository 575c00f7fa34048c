// The gRPC front end: listens, accepts connections, and shuts down gracefully.
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Serves registered services over cleartext HTTP/2 (h2c, prior knowledge) on every core.
public final class GRPCServer: Sendable {
    public let configuration: GRPCServerConfiguration
    private let router: ServiceRouter
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let connections = ConnectionRegistry()
    private let listener = Mutex<(any Channel)?>(nil)
    /// When set, every connection starts with a TLS handshake (ALPN h2) in front of HTTP/2.
    private let tls: TLSContextProvider?

    public init(configuration: GRPCServerConfiguration, services: [any GRPCService], logger: Logger,
                tls: TLSContextProvider? = nil) {
        self.configuration = configuration
        self.router = ServiceRouter(services: services)
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.eventLoopThreads))
        self.tls = tls
    }

    /// Binds and starts accepting; returns the bound port.
    @discardableResult
    public func start() async throws -> Int {
        let configuration = self.configuration
        let router = self.router
        let logger = self.logger
        let connections = self.connections
        let tls = self.tls
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 * 1024, high: 1024 * 1024))
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                guard connections.admit(channel, limit: configuration.maxConnections) else {
                    logger.warning("refusing connection: \(configuration.maxConnections) connections already open")
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in connections.remove(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let tls {
                        // Connections opened after a certificate reload get the new one.
                        try pipeline.addHandler(NIOSSLServerHandler(context: tls.context))
                        try pipeline.addHandler(PeerIdentityHandler())
                    }
                    try pipeline.addHandler(GRPCConnectionHandler(configuration: configuration, router: router, logger: logger))
                }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        listener.withLock { $0 = channel }
        let port = channel.localAddress?.port ?? configuration.port
        logger.info("listening on \(configuration.host):\(port)")
        return port
    }

    /// Graceful shutdown: stop accepting, GOAWAY on every connection, let calls in flight
    /// finish within the grace period, then close whatever is left and stop the event loops.
    public func shutdown() async {
        let channel = listener.withLock { channel -> (any Channel)? in
            defer { channel = nil }
            return channel
        }
        try? await channel?.close()
        for connection in connections.all() {
            connection.pipeline.fireUserInboundEventTriggered(GracefulShutdownEvent())
        }
        let deadline = ContinuousClock.now + .milliseconds(Int(configuration.shutdownGraceSeconds * 1000))
        while !connections.isEmpty && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for connection in connections.all() {
            try? await connection.close()
        }
        try? await group.shutdownGracefully()
    }

    /// Number of open client connections.
    public var connectionCount: Int { connections.count }
}

/// The open connections, for the connection cap and for shutdown.
final class ConnectionRegistry: Sendable {
    private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

    func admit(_ channel: any Channel, limit: Int) -> Bool {
        channels.withLock { channels in
            guard channels.count < limit else { return false }
            channels[ObjectIdentifier(channel)] = channel
            return true
        }
    }

    func remove(_ channel: any Channel) {
        _ = channels.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    func all() -> [any Channel] { channels.withLock { Array($0.values) } }
    var count: Int { channels.withLock { $0.count } }
    var isEmpty: Bool { count == 0 }
}
