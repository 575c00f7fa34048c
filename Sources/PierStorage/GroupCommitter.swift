// Group commit: one writer thread takes everything pending, appends it to the WAL, fdatasyncs once, then hands the batch on.
//
// Callers never block: `submit` queues and returns. The writer is a dedicated Thread rather
// than a NIO event loop or a cooperative-pool task because fdatasync blocks for milliseconds.
//
// After an I/O error the committer is fail-stop: that batch and everything later fail with the
// error/`closed`, because the file's state is unknown (the usual answer to a failed fsync).
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public final class GroupCommitter<Context: Sendable>: @unchecked Sendable {  // `pending`, `closing`, `failure`, `running`, `writer`, `batches` guarded by `lock`; `log` used only by the writer thread once started
    public typealias Committed = @Sendable (_ batch: [(index: UInt64, context: Context)]) -> Void
    public typealias Failed = @Sendable (_ contexts: [Context], _ error: StorageError) -> Void
    public typealias AfterBatch = @Sendable (_ log: WriteAheadLog) -> Void

    private struct Pending {
        var payload: [UInt8]
        var context: Context
    }

    private let lock = ConditionLock()
    private var pending: [Pending] = []
    private var closing = false
    private var running = true
    private var failure: StorageError?
    private var writer: pthread_t?
    private let log: WriteAheadLog
    private let maxPending: Int
    private let committed: Committed
    private let failed: Failed
    private let afterBatch: AfterBatch?

    private var batches: UInt64 = 0
    /// Batches handed to `committed` so far (a measure of how well writes are grouped).
    public var batchCount: UInt64 { lock.withLock { batches } }

    /// Starts the writer thread. `committed` runs on the writer thread after the batch is on
    /// disk, with records in log order; `failed` runs there too. `afterBatch` runs on the
    /// writer thread after each batch, with exclusive use of the log (e.g. to drop segments
    /// after a snapshot).
    public init(log: WriteAheadLog, maxPending: Int = 65_536, name: String = "pier-wal-writer",
                committed: @escaping Committed, failed: @escaping Failed,
                afterBatch: AfterBatch? = nil) {
        self.log = log
        self.maxPending = maxPending
        self.committed = committed
        self.failed = failed
        self.afterBatch = afterBatch
        let thread = Thread { [self] in self.run() }
        thread.name = name
        thread.start()
    }

    /// Queues a record. Throws `.overloaded` when the queue is full and `.closed` (or the
    /// earlier I/O error) when the committer no longer writes; otherwise the context is later
    /// passed to `committed` or `failed` exactly once.
    public func submit(_ payload: [UInt8], context: Context) throws {
        lock.lock()
        defer { lock.unlock() }
        if let failure { throw failure }
        if closing { throw StorageError.closed }
        if pending.count >= maxPending { throw StorageError.overloaded }
        pending.append(Pending(payload: payload, context: context))
        if pending.count == 1 { lock.broadcast() }
    }

    /// Completes what is queued, stops the writer thread and waits for it. Called from the
    /// writer thread itself (e.g. a completion dropped the last reference to the owner), it
    /// only asks the thread to stop, since waiting there would wait forever.
    public func close() {
        lock.lock()
        closing = true
        lock.broadcast()
        if let writer, pthread_equal(writer, pthread_self()) != 0 {
            lock.unlock()
            return
        }
        while running { lock.wait() }
        lock.unlock()
    }

    private func run() {
        lock.withLock { writer = pthread_self() }
        var batch: [Pending] = []
        while true {
            lock.lock()
            while pending.isEmpty && !closing { lock.wait() }
            if pending.isEmpty {
                running = false
                lock.broadcast()
                lock.unlock()
                log.close()
                return
            }
            swap(&batch, &pending)
            let earlier = failure
            lock.unlock()

            if let earlier {
                failed(batch.map(\.context), earlier)
            } else {
                do {
                    var entries: [(index: UInt64, context: Context)] = []
                    entries.reserveCapacity(batch.count)
                    for item in batch {
                        entries.append((try log.append(item.payload), item.context))
                    }
                    try log.sync()
                    lock.withLock { batches += 1 }
                    committed(entries)
                } catch {
                    let storageError = (error as? StorageError) ?? .corrupt("\(error)")
                    lock.withLock { failure = storageError }
                    failed(batch.map(\.context), storageError)
                }
                if failure == nil, let afterBatch { afterBatch(log) }
            }
            batch.removeAll(keepingCapacity: true)
        }
    }
}

/// The plain callback form: each append completes with its record index once it is on disk.
/// Completions run on the writer thread, in log order; they must be quick and must not block.
public final class CallbackLog: Sendable {
    public typealias Completion = @Sendable (Result<UInt64, StorageError>) -> Void
    private let committer: GroupCommitter<Completion>

    public init(log: WriteAheadLog, maxPending: Int = 65_536) {
        committer = GroupCommitter<Completion>(
            log: log, maxPending: maxPending,
            committed: { batch in for entry in batch { entry.context(.success(entry.index)) } },
            failed: { contexts, error in for c in contexts { c(.failure(error)) } })
    }

    /// Queues `payload`; `completion` fires after its fsync (or at once on the caller's thread
    /// when the queue is full or closed).
    public func append(_ payload: [UInt8], completion: @escaping Completion) {
        do { try committer.submit(payload, context: completion) } catch {
            completion(.failure((error as? StorageError) ?? .closed))
        }
    }

    /// Suspends until the record is on disk; returns its index.
    public func append(_ payload: [UInt8]) async throws -> UInt64 {
        try await withCheckedThrowingContinuation { continuation in
            append(payload) { continuation.resume(with: $0) }
        }
    }

    public var batchCount: UInt64 { committer.batchCount }

    public func close() { committer.close() }
}
