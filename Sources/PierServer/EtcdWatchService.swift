// etcdserverpb.Watch: one bidirectional stream carrying many watchers, as etcd's watch server does.
import CProtobufC
import PierGRPC
import PierKV
import PierProto
import Synchronization

public struct EtcdWatchService: GRPCService {
    public let serviceName = "etcdserverpb.Watch"
    let context: EtcdContext

    public init(context: EtcdContext) {
        self.context = context
    }

    public var methods: [String: GRPCMethod] {
        let context = self.context
        return [
            "Watch": .streaming { _, requests, writer in
                let session = WatchSession(context: context)
                try await session.run(requests: requests, writer: writer)
            },
        ]
    }
}

/// The watchers of one Watch stream and the order their responses leave in.
///
/// Two tasks share it: the receiver turns requests into watchers and control responses
/// (created, canceled, progress); the sender writes control responses in order and drains
/// watchers whose events are ready, awaiting `writer.send` so a slow client holds back the
/// engine's watchers (which fall back to catching up from history) instead of a buffer here.
/// A watcher is drained only after its `created` response is written, as etcd guarantees.
final class WatchSession: Sendable {
    /// Watch ids are chosen per stream: the client's, or the lowest free one from 0 up.
    private struct Entry {
        let watcher: Watcher
        let fragment: Bool
        let progressNotify: Bool
        var announced = false
        /// Events went out since the last progress tick (etcd then skips the notification).
        var sentEvents = false
    }

    private enum Outgoing {
        /// An encoded control response; `announce` marks the watcher it creates as drainable.
        case control([UInt8], announce: Int64?)
        /// A WatchProgressRequest: answered once everything already ready has been sent.
        case progress
    }

    private struct State {
        var outgoing: [Outgoing] = []
        var entries: [Int64: Entry] = [:]
        var ready: Set<Int64> = []
        var nextID: Int64 = 0
        var progressTick = false
        var signaled = false
        /// The sender stopped (the call is gone): the receiver stops too.
        var closed = false
        var senderWaiter: CheckedContinuation<Void, Never>? = nil
        var receiverWaiter: CheckedContinuation<Void, Never>? = nil

        /// Notes that there is work and hands back the sender to wake, if it sleeps.
        mutating func takeSenderWaiter() -> CheckedContinuation<Void, Never>? {
            signaled = true
            defer { senderWaiter = nil }
            return senderWaiter
        }
    }

    /// Control responses queued before the receiver waits for the sender (bounds memory when
    /// a client creates watchers faster than it reads).
    private static let maxOutgoing = 256
    /// Events taken from one watcher per turn, so one busy watcher cannot starve the others.
    private static let drainBatch = 1000

    private let context: EtcdContext
    private let state = Mutex(State())

    init(context: EtcdContext) {
        self.context = context
    }

    func run(requests: RequestStream, writer: ResponseWriter) async throws {
        defer { cancelAll() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await self.sendLoop(writer)
                } catch {
                    self.close()
                    throw error
                }
            }
            group.addTask { try await self.progressTicker() }
            for try await message in requests {
                try handle(message)
                await waitForRoom()
                if state.withLock({ $0.closed }) { break }
            }
            // etcd keeps delivering events after the client half-closes; the call ends when
            // the client cancels it (or the connection goes).
            try await group.next()
            group.cancelAll()
        }
    }

    // MARK: Receiver

    private func handle(_ bytes: [UInt8]) throws {
        try WireMessage.decode(bytes, as: "etcdserverpb.WatchRequest",
                               unpack: etcdserverpb__watch_request__unpack,
                               free: etcdserverpb__watch_request__free_unpacked) { request in
            switch request.pointee.request_union_case {
            case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
                create(request.pointee.create_request)
            case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST:
                cancel(request.pointee.cancel_request.pointee.watch_id)
            case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
                enqueue(.progress)
            default:
                break
            }
        }
    }

    private func create(_ request: UnsafePointer<Etcdserverpb__WatchCreateRequest>) {
        var watch = EtcdDecode.watchCreate(request)
        let requestedID = request.pointee.watch_id
        let fragment = request.pointee.fragment != 0
        let progressNotify = request.pointee.progress_notify != 0
        // An empty key means the smallest key, "\0", as in etcd.
        if watch.key.isEmpty { watch.key = [0] }
        let store = context.store
        let currentRevision = store.currentRevision

        func refuse(_ reason: String) {
            enqueue(.control(encodeResponse(revision: currentRevision, watchID: -1, created: true,
                                             canceled: true, cancelReason: reason), announce: nil))
        }
        if !watch.rangeEnd.isEmpty && watch.rangeEnd != [0] && !(watch.key.lexicographicallyPrecedes(watch.rangeEnd)) {
            refuse("mvcc: watcher range is empty")
            return
        }
        // Pin the start revision now so that the created header's revision and the first
        // event leave no gap, whatever commits between here and the registration.
        if watch.startRevision == 0 { watch.startRevision = currentRevision + 1 }

        let id: Int64? = state.withLock { state in
            if requestedID != 0 {
                return state.entries[requestedID] == nil ? requestedID : nil
            }
            while state.entries[state.nextID] != nil { state.nextID += 1 }
            defer { state.nextID += 1 }
            return state.nextID
        }
        guard let id else {
            refuse("mvcc: duplicate watch ID provided on the WatchStream")
            return
        }
        let watcher: Watcher
        do {
            watcher = try store.watch(watch) { [weak self] in self?.markReady(id) }
        } catch {
            enqueue(.control(encodeResponse(revision: currentRevision, watchID: id, created: true, canceled: true,
                                             cancelReason: etcdStatus(error).message), announce: nil))
            return
        }
        state.withLock { state in
            state.entries[id] = Entry(watcher: watcher, fragment: fragment, progressNotify: progressNotify)
        }
        enqueue(.control(encodeResponse(revision: currentRevision, watchID: id, created: true), announce: id))
    }

    private func cancel(_ id: Int64) {
        let entry = state.withLock { state in state.entries.removeValue(forKey: id) }
        // etcd answers nothing for an unknown id.
        guard let entry else { return }
        entry.watcher.cancel()
        enqueue(.control(encodeResponse(revision: context.store.currentRevision, watchID: id, canceled: true),
                         announce: nil))
    }

    private func enqueue(_ item: Outgoing) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.outgoing.append(item)
            return state.takeSenderWaiter()
        }
        waiter?.resume()
    }

    private func markReady(_ id: Int64) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.ready.insert(id)
            return state.takeSenderWaiter()
        }
        waiter?.resume()
    }

    /// Waits while too many control responses are queued; returns at once when the stream
    /// is closing or the task is cancelled.
    private func waitForRoom() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.closed || Task.isCancelled || state.outgoing.count < Self.maxOutgoing { return true }
                    state.receiverWaiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.receiverWaiter = nil }
                return state.receiverWaiter
            }
            waiter?.resume()
        }
    }

    private func close() {
        let waiter = state.withLock { state in
            state.closed = true
            defer { state.receiverWaiter = nil }
            return state.receiverWaiter
        }
        waiter?.resume()
    }

    private func cancelAll() {
        let (watchers, waiters) = state.withLock { state in
            let watchers = state.entries.values.map(\.watcher)
            state.entries.removeAll()
            let waiters = [state.senderWaiter, state.receiverWaiter]
            state.senderWaiter = nil
            state.receiverWaiter = nil
            return (watchers, waiters)
        }
        for watcher in watchers { watcher.cancel() }
        for waiter in waiters { waiter?.resume() }
    }

    // MARK: Sender

    private func progressTicker() async throws {
        while true {
            try await Task.sleep(for: context.watchProgressInterval)
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                state.progressTick = true
                return state.takeSenderWaiter()
            }
            waiter?.resume()
        }
    }

    private func sendLoop(_ writer: ResponseWriter) async throws {
        while true {
            try Task.checkCancellation()
            await waitForWork()
            try Task.checkCancellation()

            let (outgoing, receiverWaiter) = state.withLock { state in
                let taken = state.outgoing
                state.outgoing.removeAll(keepingCapacity: true)
                defer { state.receiverWaiter = nil }
                return (taken, state.receiverWaiter)
            }
            receiverWaiter?.resume()
            for item in outgoing {
                switch item {
                case .control(let bytes, let announce):
                    try await writer.send(bytes)
                    if let id = announce {
                        state.withLock { state in
                            state.entries[id]?.announced = true
                            state.ready.insert(id)
                        }
                    }
                case .progress:
                    // Everything at or below this revision that is ready goes out first.
                    let revision = context.store.currentRevision
                    try await flushAll(writer)
                    try await writer.send(encodeResponse(revision: revision, watchID: -1))
                }
            }

            let ready = state.withLock { state -> [Int64] in
                let ids = Array(state.ready)
                state.ready.removeAll(keepingCapacity: true)
                return ids
            }
            for id in ready.sorted() {
                if try await drainOnce(id, writer) {
                    state.withLock { state in _ = state.ready.insert(id) }
                }
            }

            if state.withLock({ state in defer { state.progressTick = false }; return state.progressTick }) {
                try await sendProgressNotifications(writer)
            }
        }
    }

    private func waitForWork() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.signaled || !state.outgoing.isEmpty || !state.ready.isEmpty || state.progressTick
                        || Task.isCancelled {
                        state.signaled = false
                        return true
                    }
                    state.senderWaiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.senderWaiter = nil }
                return state.senderWaiter
            }
            waiter?.resume()
        }
    }

    /// Drains every announced watcher until nothing is ready.
    private func flushAll(_ writer: ResponseWriter) async throws {
        let ids = state.withLock { state in state.entries.filter { $0.value.announced }.map(\.key) }
        for id in ids.sorted() {
            while try await drainOnce(id, writer) {}
        }
    }

    /// Sends one batch of the watcher's events; true when more are ready right away.
    private func drainOnce(_ id: Int64, _ writer: ResponseWriter) async throws -> Bool {
        guard let entry = state.withLock({ state in state.entries[id] }), entry.announced else { return false }
        let batch = entry.watcher.drain(maxEvents: Self.drainBatch)
        if !batch.events.isEmpty {
            for response in encodeEvents(batch.events, revision: batch.revision, watchID: id, fragment: entry.fragment) {
                try await writer.send(response)
            }
            state.withLock { state in state.entries[id]?.sentEvents = true }
        }
        if batch.compactRevision != 0 {
            // The history this watcher needs is gone: etcd cancels it with the compact revision.
            state.withLock { state in _ = state.entries.removeValue(forKey: id) }
            entry.watcher.cancel()
            try await writer.send(encodeResponse(revision: batch.revision, watchID: id, canceled: true,
                                                 compactRevision: batch.compactRevision))
            return false
        }
        return batch.hasMore
    }

    /// etcd's periodic progress: an empty response to each synced watcher that asked for it
    /// and received no events since the previous tick.
    private func sendProgressNotifications(_ writer: ResponseWriter) async throws {
        let candidates = state.withLock { state -> [Int64] in
            var ids: [Int64] = []
            for (id, entry) in state.entries where entry.progressNotify && entry.announced {
                if !entry.sentEvents { ids.append(id) }
                state.entries[id]?.sentEvents = false
            }
            return ids
        }
        for id in candidates.sorted() {
            let revision = context.store.currentRevision
            while try await drainOnce(id, writer) {}
            guard let entry = state.withLock({ state in state.entries[id] }), entry.watcher.isSynced else { continue }
            try await writer.send(encodeResponse(revision: revision, watchID: id))
        }
    }

    // MARK: Encoding

    private func encodeResponse(revision: Int64, watchID: Int64, created: Bool = false, canceled: Bool = false,
                                compactRevision: Int64 = 0, cancelReason: String = "") -> [UInt8] {
        WireArena.with { arena in
            let encoder = EtcdEncoder(arena: arena, identity: context.identity)
            var m = Etcdserverpb__WatchResponse()
            etcdserverpb__watch_response__init(&m)
            m.header = encoder.header(revision: revision)
            m.watch_id = watchID
            m.created = created ? 1 : 0
            m.canceled = canceled ? 1 : 0
            m.compact_revision = compactRevision
            if !cancelReason.isEmpty { m.cancel_reason = arena.cString(cancelReason) }
            return WireMessage.encode(&m, size: etcdserverpb__watch_response__get_packed_size,
                                      pack: etcdserverpb__watch_response__pack)
        }
    }

    /// One response for the events, or, for a watcher that asked for fragments, as many as
    /// keep each under etcd's limit (its sendFragments: never fewer than one
    /// event per response; `fragment` set on all but the last).
    private func encodeEvents(_ events: [WatchEvent], revision: Int64, watchID: Int64, fragment: Bool) -> [[UInt8]] {
        WireArena.with { arena in
            let encoder = EtcdEncoder(arena: arena, identity: context.identity)
            let wireEvents = events.map { encoder.event($0) }
            var m = Etcdserverpb__WatchResponse()
            etcdserverpb__watch_response__init(&m)
            m.header = encoder.header(revision: revision)
            m.watch_id = watchID

            func pack(_ slice: ArraySlice<UnsafeMutablePointer<Mvccpb__Event>>, fragment: Bool) -> [UInt8] {
                let array = arena.pointers(Mvccpb__Event.self, count: slice.count)
                for (i, event) in slice.enumerated() { array[i] = event }
                m.n_events = slice.count
                m.events = array
                m.fragment = fragment ? 1 : 0
                return WireMessage.encode(&m, size: etcdserverpb__watch_response__get_packed_size,
                                          pack: etcdserverpb__watch_response__pack)
            }

            // etcd's watch server splits at --max-request-bytes plus its 512 KiB gRPC allowance.
            let limit = context.maxRequestBytes + 512 * 1024
            guard fragment, wireEvents.count > 1 else { return [pack(wireEvents[...], fragment: false)] }
            let baseSize = etcdserverpb__watch_response__get_packed_size(&m)
            let eventSizes = wireEvents.map { event -> Int in
                let size = mvccpb__event__get_packed_size(event)
                return 1 + varintLength(size) + size
            }
            if baseSize + eventSizes.reduce(0, +) < limit { return [pack(wireEvents[...], fragment: false)] }
            var responses: [[UInt8]] = []
            var start = 0
            while start < wireEvents.count {
                var end = start
                var size = baseSize + 2  // the fragment flag
                while end < wireEvents.count {
                    size += eventSizes[end]
                    if end > start && size >= limit { break }
                    end += 1
                }
                responses.append(pack(wireEvents[start..<end], fragment: end < wireEvents.count))
                start = end
            }
            return responses
        }
    }
}

private func varintLength(_ value: Int) -> Int {
    var v = UInt64(value)
    var length = 1
    while v >= 0x80 {
        v >>= 7
        length += 1
    }
    return length
}
