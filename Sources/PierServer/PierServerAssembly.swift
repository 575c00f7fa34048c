// Builds the server's services from its options: opens the KV engine and wires the etcd API to it.
import Logging
import PierGRPC
import PierKV

/// What `pier serve` is configured with (the etcd names are etcd's flags).
public struct PierServerOptions: Sendable {
    /// Where the KV engine keeps its write-ahead log and snapshots.
    public var dataDirectory: String
    /// etcd's --quota-backend-bytes (default 2 GiB); past it writes fail with
    /// "etcdserver: mvcc: database space exceeded" and the NOSPACE alarm is raised.
    public var quotaBackendBytes: Int64 = 2 * 1024 * 1024 * 1024
    /// etcd's --max-request-bytes (default 1.5 MiB).
    public var maxRequestBytes: Int = 1_572_864
    /// etcd's --max-txn-ops.
    public var maxTxnOps: Int = 128
    /// etcd's --name, and the advertised peer URL etcd members would reach this one at.
    public var memberName: String = "default"
    public var peerURL: String = "http://localhost:2380"
    /// etcd's --advertise-client-urls; empty means the bound listen address.
    public var advertiseClientURLs: [String] = []
    /// etcd's --experimental-watch-progress-notify-interval.
    public var watchProgressNotifyInterval: Duration = .seconds(600)
    /// How often expired leases are looked for (etcd checks every 500 ms).
    public var leaseExpiryCheckInterval: Duration = .milliseconds(500)

    public init(dataDirectory: String) {
        self.dataDirectory = dataDirectory
    }

    /// The gateway's receive limit: etcd lets gRPC accept 512 KiB more than
    /// --max-request-bytes so that an oversized write gets etcd's own
    /// "request is too large" rather than a transport error.
    public var grpcMaxReceiveMessageBytes: Int { maxRequestBytes + 512 * 1024 }
}

/// The services of one server and the background work they need. Create it, pass
/// `services` to the `GRPCServer`, call `started(host:port:)` once the listener is bound and
/// `shutdown()` after the gateway has stopped.
public final class PierServerAssembly: Sendable {
    public let options: PierServerOptions
    public let health: HealthStatus
    public let etcd: EtcdContext
    public let services: [any GRPCService]
    private let leaseExpiry: LeaseExpiryLoop
    /// The log (topics, partitions, groups, queues), kept under `<data dir>/log`.
    public let log: LogService
    private let logger: Logger

    public init(options: PierServerOptions, logger: Logger) throws {
        self.options = options
        self.logger = logger
        let identity = EtcdIdentity.derived(name: options.memberName, peerURL: options.peerURL)
        let store: KVStore
        do {
            store = try KVStore(options: KVOptions(dataDirectory: options.dataDirectory,
                                                   quotaBackendBytes: options.quotaBackendBytes,
                                                   maxTxnOps: options.maxTxnOps,
                                                   memberID: identity.memberID))
        } catch {
            throw GRPCStatus(.unavailable, "cannot open the key-value store in \(options.dataDirectory): \(error.message)")
        }
        let etcd = EtcdContext(store: store, identity: identity, maxRequestBytes: options.maxRequestBytes,
                               memberName: options.memberName, peerURLs: [options.peerURL],
                               clientURLs: options.advertiseClientURLs,
                               watchProgressInterval: options.watchProgressNotifyInterval)
        self.etcd = etcd
        self.health = HealthStatus()
        self.leaseExpiry = LeaseExpiryLoop(store: store, interval: options.leaseExpiryCheckInterval)
        let etcdServices: [any GRPCService] = [
            EtcdKVService(context: etcd),
            EtcdWatchService(context: etcd),
            EtcdLeaseService(context: etcd),
            EtcdClusterService(context: etcd),
            EtcdMaintenanceService(context: etcd),
            EtcdAuthService(context: etcd),
        ]
        self.log = try LogService.open(directory: options.dataDirectory + "/log", logger: logger)
        self.services = [HealthService(health: health)] + etcdServices + [log]
        health.set("", .notServing)
        for service in etcdServices { health.set(service.serviceName, .notServing) }
    }

    /// Applies the limits the etcd API depends on to the gateway's configuration.
    public func configure(_ configuration: inout GRPCServerConfiguration) {
        configuration.maxReceiveMessageBytes = max(configuration.maxReceiveMessageBytes,
                                                   options.grpcMaxReceiveMessageBytes)
    }

    /// Call once the gateway listens: records the client URL, starts lease expiry, and
    /// reports the services as serving.
    public func started(host: String, port: Int) {
        if etcd.clientURLs.isEmpty {
            let bracketed = host.contains(":") ? "[\(host)]" : host
            etcd.clientURLs = ["http://\(bracketed):\(port)"]
        }
        leaseExpiry.start()
        health.set("", .serving)
        for service in services where service.serviceName != "grpc.health.v1.Health" {
            health.set(service.serviceName, .serving)
        }
        logger.info("etcd API ready", metadata: [
            "member-id": "\(String(etcd.identity.memberID, radix: 16))",
            "cluster-id": "\(String(etcd.identity.clusterID, radix: 16))",
        ])
    }

    /// Stops background work and closes the engine (after the gateway stopped taking calls).
    public func shutdown() {
        health.set("", .notServing)
        leaseExpiry.stop()
        etcd.store.close()
        log.shutdown()
    }
}
