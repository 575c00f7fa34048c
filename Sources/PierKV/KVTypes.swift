// Public request/response values of the KV engine: etcd v3's model as plain Swift values, no wire types.
//
// Field names follow etcd's protobuf messages so the service layer maps them one to one.
// Every response carries `revision`: the store's revision to put in the ResponseHeader
// (cluster id, member id and raft term are the service's business).

/// One key-value pair at one revision (etcd's mvccpb.KeyValue).
public struct KeyValue: Sendable, Equatable, Hashable {
    public var key: [UInt8]
    /// Revision of the last creation of this key (0 for a tombstone).
    public var createRevision: Int64
    /// Revision of the last modification of this key.
    public var modRevision: Int64
    /// Number of puts since the key was (re)created; 0 for a tombstone.
    public var version: Int64
    public var value: [UInt8]
    /// Lease attached to the key, 0 when none.
    public var lease: Int64

    public init(key: [UInt8], createRevision: Int64 = 0, modRevision: Int64 = 0, version: Int64 = 0,
                value: [UInt8] = [], lease: Int64 = 0) {
        self.key = key
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.value = value
        self.lease = lease
    }
}

// MARK: - Range

public enum SortOrder: Int32, Sendable, Equatable {
    case none = 0, ascend = 1, descend = 2
}

public enum SortTarget: Int32, Sendable, Equatable {
    case key = 0, version = 1, create = 2, mod = 3, value = 4
}

/// etcd's RangeRequest. `rangeEnd` empty: single key; `[0]`: every key >= `key`;
/// otherwise the half-open interval [key, rangeEnd).
public struct RangeRequest: Sendable, Equatable {
    public var key: [UInt8]
    public var rangeEnd: [UInt8]
    /// 0 means no limit.
    public var limit: Int64
    /// 0 means the current revision.
    public var revision: Int64
    public var sortOrder: SortOrder
    public var sortTarget: SortTarget
    /// Accepted for completeness; a single node always serves the latest applied state.
    public var serializable: Bool
    public var keysOnly: Bool
    public var countOnly: Bool
    public var minModRevision: Int64
    public var maxModRevision: Int64
    public var minCreateRevision: Int64
    public var maxCreateRevision: Int64

    public init(key: [UInt8], rangeEnd: [UInt8] = [], limit: Int64 = 0, revision: Int64 = 0,
                sortOrder: SortOrder = .none, sortTarget: SortTarget = .key, serializable: Bool = false,
                keysOnly: Bool = false, countOnly: Bool = false,
                minModRevision: Int64 = 0, maxModRevision: Int64 = 0,
                minCreateRevision: Int64 = 0, maxCreateRevision: Int64 = 0) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.limit = limit
        self.revision = revision
        self.sortOrder = sortOrder
        self.sortTarget = sortTarget
        self.serializable = serializable
        self.keysOnly = keysOnly
        self.countOnly = countOnly
        self.minModRevision = minModRevision
        self.maxModRevision = maxModRevision
        self.minCreateRevision = minCreateRevision
        self.maxCreateRevision = maxCreateRevision
    }
}

public struct RangeResponse: Sendable, Equatable {
    public var revision: Int64
    public var kvs: [KeyValue]
    public var more: Bool
    /// Number of keys in the range at the read revision, before `limit` (etcd counts before
    /// the min/max revision filters too).
    public var count: Int64

    public init(revision: Int64, kvs: [KeyValue], more: Bool, count: Int64) {
        self.revision = revision
        self.kvs = kvs
        self.more = more
        self.count = count
    }
}

// MARK: - Put / DeleteRange

public struct PutRequest: Sendable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]
    public var lease: Int64
    public var prevKV: Bool
    public var ignoreValue: Bool
    public var ignoreLease: Bool

    public init(key: [UInt8], value: [UInt8] = [], lease: Int64 = 0, prevKV: Bool = false,
                ignoreValue: Bool = false, ignoreLease: Bool = false) {
        self.key = key
        self.value = value
        self.lease = lease
        self.prevKV = prevKV
        self.ignoreValue = ignoreValue
        self.ignoreLease = ignoreLease
    }
}

public struct PutResponse: Sendable, Equatable {
    public var revision: Int64
    public var prevKV: KeyValue?

    public init(revision: Int64, prevKV: KeyValue? = nil) {
        self.revision = revision
        self.prevKV = prevKV
    }
}

public struct DeleteRangeRequest: Sendable, Equatable {
    public var key: [UInt8]
    public var rangeEnd: [UInt8]
    public var prevKV: Bool

    public init(key: [UInt8], rangeEnd: [UInt8] = [], prevKV: Bool = false) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.prevKV = prevKV
    }
}

public struct DeleteRangeResponse: Sendable, Equatable {
    public var revision: Int64
    public var deleted: Int64
    public var prevKVs: [KeyValue]

    public init(revision: Int64, deleted: Int64, prevKVs: [KeyValue] = []) {
        self.revision = revision
        self.deleted = deleted
        self.prevKVs = prevKVs
    }
}

// MARK: - Txn

/// etcd's Compare. The target and its operand travel together; when the wire message's
/// `target` and `target_union` disagree, etcd compares against the zero value of the target's
/// type, so the service should build e.g. `.version(0)` or `.value([])` in that case.
public struct Compare: Sendable, Equatable {
    public enum Result: Int32, Sendable, Equatable {
        case equal = 0, greater = 1, less = 2, notEqual = 3
    }

    public enum Target: Sendable, Equatable {
        case version(Int64)
        case create(Int64)
        case mod(Int64)
        case value([UInt8])
        case lease(Int64)
    }

    public var result: Result
    public var target: Target
    public var key: [UInt8]
    /// Same conventions as `RangeRequest.rangeEnd`.
    public var rangeEnd: [UInt8]

    public init(key: [UInt8], rangeEnd: [UInt8] = [], target: Target, result: Result) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.target = target
        self.result = result
    }
}

public indirect enum RequestOp: Sendable, Equatable {
    case range(RangeRequest)
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
    case txn(TxnRequest)
}

public struct TxnRequest: Sendable, Equatable {
    public var compare: [Compare]
    public var success: [RequestOp]
    public var failure: [RequestOp]

    public init(compare: [Compare] = [], success: [RequestOp] = [], failure: [RequestOp] = []) {
        self.compare = compare
        self.success = success
        self.failure = failure
    }
}

public indirect enum ResponseOp: Sendable, Equatable {
    case range(RangeResponse)
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
    case txn(TxnResponse)
}

public struct TxnResponse: Sendable, Equatable {
    /// 0 for a txn nested in another, whose header etcd leaves empty.
    public var revision: Int64
    public var succeeded: Bool
    /// One response per op of the branch taken, in order.
    public var responses: [ResponseOp]

    public init(revision: Int64, succeeded: Bool, responses: [ResponseOp]) {
        self.revision = revision
        self.succeeded = succeeded
        self.responses = responses
    }
}

// MARK: - Compaction

public struct CompactionRequest: Sendable, Equatable {
    public var revision: Int64
    /// Accepted for compatibility: compaction here is applied before the reply, so it is
    /// always "physical".
    public var physical: Bool

    public init(revision: Int64, physical: Bool = false) {
        self.revision = revision
        self.physical = physical
    }
}

public struct CompactionResponse: Sendable, Equatable {
    public var revision: Int64
    public init(revision: Int64) { self.revision = revision }
}

// MARK: - Leases

public struct LeaseGrantRequest: Sendable, Equatable {
    /// Seconds. Raised to the store's minimum TTL when lower.
    public var ttl: Int64
    /// 0 lets the store choose a fresh id.
    public var id: Int64

    public init(ttl: Int64, id: Int64 = 0) {
        self.ttl = ttl
        self.id = id
    }
}

public struct LeaseGrantResponse: Sendable, Equatable {
    public var revision: Int64
    public var id: Int64
    /// The TTL actually granted (after the minimum TTL is applied).
    public var ttl: Int64

    public init(revision: Int64, id: Int64, ttl: Int64) {
        self.revision = revision
        self.id = id
        self.ttl = ttl
    }
}

public struct LeaseRevokeResponse: Sendable, Equatable {
    public var revision: Int64
    public init(revision: Int64) { self.revision = revision }
}

public struct LeaseKeepAliveResponse: Sendable, Equatable {
    public var revision: Int64
    public var id: Int64
    /// The lease's granted TTL (the new remaining time after the renewal), as etcd answers.
    public var ttl: Int64

    public init(revision: Int64, id: Int64, ttl: Int64) {
        self.revision = revision
        self.id = id
        self.ttl = ttl
    }
}

public struct LeaseTimeToLiveResponse: Sendable, Equatable {
    public var revision: Int64
    public var id: Int64
    /// Remaining seconds (truncated, as etcd does).
    public var ttl: Int64
    public var grantedTTL: Int64
    /// Attached keys, sorted; empty unless requested.
    public var keys: [[UInt8]]

    public init(revision: Int64, id: Int64, ttl: Int64, grantedTTL: Int64, keys: [[UInt8]]) {
        self.revision = revision
        self.id = id
        self.ttl = ttl
        self.grantedTTL = grantedTTL
        self.keys = keys
    }
}

public struct LeaseLeasesResponse: Sendable, Equatable {
    public var revision: Int64
    /// Lease ids, ascending.
    public var leases: [Int64]

    public init(revision: Int64, leases: [Int64]) {
        self.revision = revision
        self.leases = leases
    }
}

// MARK: - Maintenance

public enum AlarmType: Int32, Sendable, Equatable, Hashable {
    case none = 0, noSpace = 1, corrupt = 2
}

public enum AlarmAction: Int32, Sendable, Equatable {
    case get = 0, activate = 1, deactivate = 2
}

public struct AlarmMember: Sendable, Equatable, Hashable {
    public var memberID: UInt64
    public var alarm: AlarmType

    public init(memberID: UInt64, alarm: AlarmType) {
        self.memberID = memberID
        self.alarm = alarm
    }
}

public struct AlarmRequest: Sendable, Equatable {
    public var action: AlarmAction
    /// 0 with `.get`/`.deactivate` means every member.
    public var memberID: UInt64
    /// `.none` with `.get`/`.deactivate` means every alarm type.
    public var alarm: AlarmType

    public init(action: AlarmAction, memberID: UInt64 = 0, alarm: AlarmType = .none) {
        self.action = action
        self.memberID = memberID
        self.alarm = alarm
    }
}

public struct AlarmResponse: Sendable, Equatable {
    public var revision: Int64
    public var alarms: [AlarmMember]

    public init(revision: Int64, alarms: [AlarmMember]) {
        self.revision = revision
        self.alarms = alarms
    }
}

/// What Maintenance.Status reports about the engine.
public struct KVStatus: Sendable, Equatable {
    public var revision: Int64
    public var compactRevision: Int64
    /// Index of the last applied command (etcd's raft index / applied index).
    public var raftIndex: UInt64
    /// Estimated bytes of the MVCC state plus the files on disk (etcd's db size).
    public var dbSize: Int64
    /// Estimated bytes of the MVCC state in use (etcd's db size in use).
    public var dbSizeInUse: Int64
    /// Live (non-deleted) keys at the current revision.
    public var keyCount: Int64
    public var leaseCount: Int64
    public var alarms: [AlarmMember]

    public init(revision: Int64, compactRevision: Int64, raftIndex: UInt64, dbSize: Int64,
                dbSizeInUse: Int64, keyCount: Int64, leaseCount: Int64, alarms: [AlarmMember]) {
        self.revision = revision
        self.compactRevision = compactRevision
        self.raftIndex = raftIndex
        self.dbSize = dbSize
        self.dbSizeInUse = dbSizeInUse
        self.keyCount = keyCount
        self.leaseCount = leaseCount
        self.alarms = alarms
    }
}

public struct HashKVResponse: Sendable, Equatable {
    /// Current revision (for the header).
    public var revision: Int64
    public var hash: UInt32
    public var compactRevision: Int64
    /// The revision the hash covers.
    public var hashRevision: Int64

    public init(revision: Int64, hash: UInt32, compactRevision: Int64, hashRevision: Int64) {
        self.revision = revision
        self.hash = hash
        self.compactRevision = compactRevision
        self.hashRevision = hashRevision
    }
}

// MARK: - Watch

public struct WatchRequest: Sendable, Equatable {
    public var key: [UInt8]
    /// Same conventions as `RangeRequest.rangeEnd`.
    public var rangeEnd: [UInt8]
    /// 0 means "from the next revision".
    public var startRevision: Int64
    public var noPut: Bool
    public var noDelete: Bool
    public var prevKV: Bool

    public init(key: [UInt8], rangeEnd: [UInt8] = [], startRevision: Int64 = 0,
                noPut: Bool = false, noDelete: Bool = false, prevKV: Bool = false) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.startRevision = startRevision
        self.noPut = noPut
        self.noDelete = noDelete
        self.prevKV = prevKV
    }
}

public struct WatchEvent: Sendable, Equatable {
    public enum Kind: Int32, Sendable, Equatable {
        case put = 0, delete = 1
    }

    public var kind: Kind
    /// For a delete: key and modRevision only (etcd's tombstone).
    public var kv: KeyValue
    /// The key's previous value, when the watch asked for it and one exists.
    public var prevKV: KeyValue?

    public init(kind: Kind, kv: KeyValue, prevKV: KeyValue? = nil) {
        self.kind = kind
        self.kv = kv
        self.prevKV = prevKV
    }
}

/// What one `Watcher.drain(maxEvents:)` hands out.
public struct WatchBatch: Sendable, Equatable {
    /// Events in revision order; a revision's events are never split across batches unless
    /// one revision alone exceeds the requested maximum.
    public var events: [WatchEvent]
    /// The store's current revision when drained (for the response header).
    public var revision: Int64
    /// Non-zero when the watcher was cancelled because the history it needs was compacted:
    /// send a cancel response carrying this compact revision. The watcher is dead afterwards.
    public var compactRevision: Int64
    /// True when more events are ready right now (drain again when there is capacity).
    public var hasMore: Bool

    public init(events: [WatchEvent], revision: Int64, compactRevision: Int64 = 0, hasMore: Bool = false) {
        self.events = events
        self.revision = revision
        self.compactRevision = compactRevision
        self.hasMore = hasMore
    }
}

// MARK: - Errors

/// The gRPC status code a `KVError` maps to; the service turns it into the wire status.
public enum KVErrorCode: Sendable, Equatable {
    case invalidArgument, outOfRange, notFound, failedPrecondition, resourceExhausted, unavailable, dataLoss
}

/// Errors with etcd's exact wire texts (etcd clients match on them).
public enum KVError: Error, Sendable, Equatable, CustomStringConvertible {
    /// InvalidArgument
    case emptyKey
    /// InvalidArgument
    case valueProvided
    /// InvalidArgument
    case leaseProvided
    /// InvalidArgument
    case tooManyOps
    /// InvalidArgument
    case duplicateKey
    /// InvalidArgument
    case invalidSortOption
    /// InvalidArgument (etcd uses InvalidArgument for a missing key with ignore_value/ignore_lease)
    case keyNotFound
    /// OutOfRange
    case compacted
    /// OutOfRange
    case futureRevision
    /// NotFound
    case leaseNotFound
    /// FailedPrecondition
    case leaseExists
    /// OutOfRange
    case leaseTTLTooLarge
    /// ResourceExhausted
    case noSpace
    /// ResourceExhausted: the write queue is full.
    case tooManyRequests
    /// Unavailable: the store is closed or its log failed (fail-stop after an I/O error).
    case stopped
    /// DataLoss: on-disk state failed its checksum or could not be decoded.
    case corrupt(String)
    /// Unavailable: a file operation failed (disk full, permissions, ...); the detail says which.
    case io(String)

    public var message: String {
        switch self {
        case .emptyKey: return "etcdserver: key is not provided"
        case .valueProvided: return "etcdserver: value is provided"
        case .leaseProvided: return "etcdserver: lease is provided"
        case .tooManyOps: return "etcdserver: too many operations in txn request"
        case .duplicateKey: return "etcdserver: duplicate key given in txn request"
        case .invalidSortOption: return "etcdserver: invalid sort option"
        case .keyNotFound: return "etcdserver: key not found"
        case .compacted: return "etcdserver: mvcc: required revision has been compacted"
        case .futureRevision: return "etcdserver: mvcc: required revision is a future revision"
        case .leaseNotFound: return "etcdserver: requested lease not found"
        case .leaseExists: return "etcdserver: lease already exists"
        case .leaseTTLTooLarge: return "etcdserver: too large lease TTL"
        case .noSpace: return "etcdserver: mvcc: database space exceeded"
        case .tooManyRequests: return "etcdserver: too many requests"
        case .stopped: return "etcdserver: server stopped"
        case .corrupt(let detail): return "etcdserver: corrupt cluster: \(detail)"
        case .io(let detail): return "etcdserver: storage error: \(detail)"
        }
    }

    public var code: KVErrorCode {
        switch self {
        case .emptyKey, .valueProvided, .leaseProvided, .tooManyOps, .duplicateKey,
             .invalidSortOption, .keyNotFound:
            return .invalidArgument
        case .compacted, .futureRevision, .leaseTTLTooLarge:
            return .outOfRange
        case .leaseNotFound:
            return .notFound
        case .leaseExists:
            return .failedPrecondition
        case .noSpace, .tooManyRequests:
            return .resourceExhausted
        case .stopped, .io:
            return .unavailable
        case .corrupt:
            return .dataLoss
        }
    }

    public var description: String { message }
}

// MARK: - Options

/// How a store is opened.
public struct KVOptions: Sendable {
    /// Where the WAL and snapshots live; nil keeps everything in memory (tests, benchmarks).
    public var dataDirectory: String?
    /// 0 disables the quota. etcd's default is 2 GiB; the server decides.
    public var quotaBackendBytes: Int64
    /// etcd's --max-txn-ops.
    public var maxTxnOps: Int
    /// Minimum lease TTL in seconds. etcd: ceil((3 * electionTicks / 2) * heartbeat) =
    /// ceil(15 * 100 ms) = 2 s with the default 10 ticks of 100 ms.
    public var minLeaseTTL: Int64
    /// Take a snapshot (and drop older WAL segments) after this many applied commands.
    public var snapshotCount: UInt64
    /// WAL segment size before rolling to a new file.
    public var walSegmentBytes: Int
    /// Maximum queued, not yet written commands; beyond it writes fail with `.tooManyRequests`.
    public var maxPendingWrites: Int
    /// Per-watcher bound on buffered events before it falls back to catching up from history.
    public var watcherBufferLimit: Int
    /// Per-watcher bound on buffered bytes (keys and values), same fallback.
    public var watcherBufferBytes: Int
    /// This member's id, used for alarms.
    public var memberID: UInt64
    /// Monotonic clock in nanoseconds for lease expiry; replaceable in tests.
    public var clock: @Sendable () -> UInt64
    /// etcd's --unsafe-no-fsync: skip fdatasync. A success then no longer means "on disk";
    /// only for benchmarks and throwaway clusters, never the default.
    public var unsafeNoFsync: Bool

    public init(dataDirectory: String? = nil, quotaBackendBytes: Int64 = 0, maxTxnOps: Int = 128,
                minLeaseTTL: Int64 = 2, snapshotCount: UInt64 = 100_000,
                walSegmentBytes: Int = 64 << 20, maxPendingWrites: Int = 65_536,
                watcherBufferLimit: Int = 1024, memberID: UInt64 = 1,
                clock: @escaping @Sendable () -> UInt64 = MonotonicClock.nanoseconds,
                unsafeNoFsync: Bool = false, watcherBufferBytes: Int = 16 << 20) {
        self.dataDirectory = dataDirectory
        self.quotaBackendBytes = quotaBackendBytes
        self.maxTxnOps = maxTxnOps
        self.minLeaseTTL = minLeaseTTL
        self.snapshotCount = snapshotCount
        self.walSegmentBytes = walSegmentBytes
        self.maxPendingWrites = maxPendingWrites
        self.watcherBufferLimit = watcherBufferLimit
        self.memberID = memberID
        self.clock = clock
        self.unsafeNoFsync = unsafeNoFsync
        self.watcherBufferBytes = watcherBufferBytes
    }
}

/// etcd's MaxLeaseTTL: 9,000,000,000 seconds.
public let maxLeaseTTL: Int64 = 9_000_000_000
