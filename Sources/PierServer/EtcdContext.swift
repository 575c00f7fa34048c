// What every etcd service shares: the KV engine, this member's identity and the request limits.
import NIOCore
import PierGRPC
import PierKV
import Synchronization

/// Shared by the etcd services of one server.
public final class EtcdContext: Sendable {
    public let store: KVStore
    public let identity: EtcdIdentity
    /// etcd's --max-request-bytes: a write whose request is larger fails with
    /// "etcdserver: request is too large" (the gateway's message limit sits above it, as
    /// etcd's gRPC limit does, so the etcd error is what clients see).
    public let maxRequestBytes: Int
    public let memberName: String
    public let peerURLs: [String]
    /// Period of progress notifications to watchers that asked for them (etcd: 10 minutes).
    public let watchProgressInterval: Duration
    private let clientURLState: Mutex<[String]>

    public init(store: KVStore, identity: EtcdIdentity, maxRequestBytes: Int, memberName: String,
                peerURLs: [String], clientURLs: [String], watchProgressInterval: Duration) {
        self.store = store
        self.identity = identity
        self.maxRequestBytes = maxRequestBytes
        self.memberName = memberName
        self.peerURLs = peerURLs
        self.watchProgressInterval = watchProgressInterval
        self.clientURLState = Mutex(clientURLs)
    }

    /// The URLs clients reach this member at (known once the listener is bound).
    public var clientURLs: [String] {
        get { clientURLState.withLock { $0 } }
        set { clientURLState.withLock { $0 = newValue } }
    }

    /// etcd refuses proposals larger than --max-request-bytes; reads are not proposals.
    func checkProposalSize(_ bytes: [UInt8]) throws {
        if bytes.count > maxRequestBytes { throw EtcdError.requestTooLarge }
    }
}

extension UnaryResponder {
    /// Completes with an engine result, encoding a success on the call's event loop (engine
    /// completions arrive on the storage writer thread, which must not do the encoding).
    func complete<Response: Sendable>(_ result: Result<Response, KVError>, on loop: any EventLoop,
                                      encode: @escaping @Sendable (Response) -> [UInt8]) {
        switch result {
        case .success(let response):
            // Read-only txns complete synchronously on the loop; writes come from the writer.
            if loop.inEventLoop {
                succeed(encode(response))
            } else {
                loop.execute { self.succeed(encode(response)) }
            }
        case .failure(let error):
            fail(error.grpcStatus)
        }
    }
}
