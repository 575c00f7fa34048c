// The etcd v3 API's error statuses: etcd's gRPC codes and exact message texts, which etcd
// clients match on (clientv3 maps the text back to its typed errors).
import PierGRPC

enum EtcdError {
    static let emptyKey = GRPCStatus(.invalidArgument, "etcdserver: key is not provided")
    static let keyNotFound = GRPCStatus(.invalidArgument, "etcdserver: key not found")
    static let valueProvided = GRPCStatus(.invalidArgument, "etcdserver: value is provided")
    static let leaseProvided = GRPCStatus(.invalidArgument, "etcdserver: lease is provided")
    static let ttlZero = GRPCStatus(.invalidArgument, "etcdserver: ttl is 0")
    static let tooManyOps = GRPCStatus(.invalidArgument, "etcdserver: too many operations in txn request")
    static let duplicateKey = GRPCStatus(.invalidArgument, "etcdserver: duplicate key given in txn request")
    static let compacted = GRPCStatus(.outOfRange, "etcdserver: mvcc: required revision has been compacted")
    static let futureRevision = GRPCStatus(.outOfRange, "etcdserver: mvcc: required revision is a future revision")
    static let noSpace = GRPCStatus(.resourceExhausted, "etcdserver: mvcc: database space exceeded")

    static let leaseNotFound = GRPCStatus(.notFound, "etcdserver: requested lease not found")
    static let leaseExists = GRPCStatus(.failedPrecondition, "etcdserver: lease already exists")
    static let leaseTTLTooLarge = GRPCStatus(.outOfRange, "etcdserver: too large lease TTL")

    static let memberNotFound = GRPCStatus(.notFound, "etcdserver: member not found")
    static let memberBadURLs = GRPCStatus(.invalidArgument, "etcdserver: given member URLs are invalid")
    static let memberNotLearner = GRPCStatus(.failedPrecondition, "etcdserver: can only promote a learner member")
    static let badLeaderTransferee = GRPCStatus(.failedPrecondition, "etcdserver: bad leader transferee")

    static let requestTooLarge = GRPCStatus(.invalidArgument, "etcdserver: request is too large")
    static let tooManyRequests = GRPCStatus(.resourceExhausted, "etcdserver: too many requests")

    static let authNotEnabled = GRPCStatus(.failedPrecondition, "etcdserver: authentication is not enabled")
    static let stopped = GRPCStatus(.unavailable, "etcdserver: server stopped")
    static let timeout = GRPCStatus(.unavailable, "etcdserver: request timed out")
    static let notCapable = GRPCStatus(.unavailable, "etcdserver: not capable")
    static let corrupt = GRPCStatus(.dataLoss, "etcdserver: corrupt cluster")

    /// Calls this single member cannot serve (membership changes); etcd's code for a
    /// reconfiguration it cannot carry out.
    static func unsupported(_ what: String) -> GRPCStatus {
        GRPCStatus(.unimplemented, "pier: \(what) is not supported by a single-member server")
    }
}
