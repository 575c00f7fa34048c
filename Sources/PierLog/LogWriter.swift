// The single writer thread: takes every pending append, writes them, syncs each touched partition once, then acks.

import Foundation

/// Group commit across partitions. Callers never block: they enqueue and get a completion
/// callback, run on this thread after the data is durable, so completions must be cheap
/// (hand the result to an event loop or resume a continuation). Maintenance work (retention,
/// cleaning, deleting topics) runs on the same thread as tasks, so nothing else mutates logs.
final class LogWriter: @unchecked Sendable {
    // `queue`, `queuedBytes` and `running` are guarded by `condition`.
    typealias Completion = @Sendable (Result<AppendResult, LogError>) -> Void

    private enum Job {
        case append(PartitionLog, EncodedBatch, Completion)
        case task(@Sendable () -> Void)
    }

    private let condition = NSCondition()
    private var queue: [Job] = []
    private var queuedBytes = 0
    private var running = true
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    let maxQueuedBytes: Int
    let clock: @Sendable () -> Int64

    init(maxQueuedBytes: Int, clock: @escaping @Sendable () -> Int64) {
        self.maxQueuedBytes = maxQueuedBytes
        self.clock = clock
        // The thread keeps the writer alive until shutdown lets it finish.
        let t = Thread { self.run() }
        t.name = "pier-log-writer"
        thread = t
        t.start()
    }

    /// Queues an append. Fails at once (RESOURCE_EXHAUSTED) when too many bytes are pending,
    /// which pushes back on producers instead of buffering without bound.
    func append(_ batch: EncodedBatch, to partition: PartitionLog, completion: @escaping Completion) {
        condition.lock()
        guard running else {
            condition.unlock()
            completion(.failure(.closed))
            return
        }
        if queuedBytes + batch.frameSize > maxQueuedBytes && queuedBytes > 0 {
            condition.unlock()
            completion(.failure(.resourceExhausted("the log writer has \(queuedBytes) bytes waiting to be written; retry shortly")))
            return
        }
        queuedBytes += batch.frameSize
        queue.append(.append(partition, batch, completion))
        condition.signal()
        condition.unlock()
    }

    /// Runs `body` on the writer thread after the appends queued before it are durable.
    func submit(_ body: @escaping @Sendable () -> Void) {
        condition.lock()
        guard running else {
            condition.unlock()
            return
        }
        queue.append(.task(body))
        condition.signal()
        condition.unlock()
    }

    /// Runs `body` on the writer thread and waits for it (admin operations, tests).
    func sync<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        submit {
            box.set(Result { try body() })
            done.signal()
        }
        condition.lock()
        let alive = running
        condition.unlock()
        guard alive else { throw LogError.closed }
        done.wait()
        return try box.get()
    }

    /// Finishes queued work, then stops the thread.
    func shutdown() {
        condition.lock()
        let wasRunning = running
        running = false
        condition.signal()
        let onWriter = Thread.current === thread
        condition.unlock()
        // From the writer thread itself (a completion dropping the last engine reference) the
        // loop ends on its own once this job returns; waiting would deadlock.
        if wasRunning && !onWriter { finished.wait() }
    }

    private func run() {
        while true {
            condition.lock()
            while queue.isEmpty && running { condition.wait() }
            if queue.isEmpty && !running {
                condition.unlock()
                break
            }
            let jobs = queue
            queue = []
            queuedBytes = 0
            condition.unlock()
            process(jobs)
        }
        finished.signal()
    }

    private struct Done {
        let partition: PartitionLog
        let completion: Completion
        let result: Result<AppendResult, LogError>
    }

    private func process(_ jobs: [Job]) {
        var done: [Done] = []
        var touched: [PartitionLog] = []
        let now = clock()
        for job in jobs {
            switch job {
            case .append(let partition, var batch, let completion):
                let result: Result<AppendResult, LogError>
                do {
                    result = .success(try partition.append(&batch, nowMs: now))
                    if !touched.contains(where: { $0 === partition }) { touched.append(partition) }
                } catch {
                    result = .failure(error as? LogError ?? .storage("\(error)"))
                }
                done.append(Done(partition: partition, completion: completion, result: result))
            case .task(let body):
                flush(&touched, &done)
                body()
            }
        }
        flush(&touched, &done)
    }

    /// One sync per touched partition, then every completion, then every woken reader.
    private func flush(_ touched: inout [PartitionLog], _ done: inout [Done]) {
        var failed: [ObjectIdentifier: LogError] = [:]
        var wake: [LogWaiter] = []
        for p in touched {
            do { wake += try p.flush() } catch { failed[ObjectIdentifier(p)] = error as? LogError ?? .storage("\(error)") }
        }
        for d in done {
            if case .success = d.result, let e = failed[ObjectIdentifier(d.partition)] {
                d.completion(.failure(e))
            } else {
                d.completion(d.result)
            }
        }
        for w in wake { w.fire() }
        touched = []
        done = []
    }
}

/// Carries a result from the writer thread to a waiting caller; guarded by its lock.
final class ResultBox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<T, Error>?

    func set(_ r: Result<T, Error>) {
        lock.lock()
        value = r
        lock.unlock()
    }

    func get() throws -> T {
        lock.lock()
        defer { lock.unlock() }
        guard let value else { throw LogError.closed }
        return try value.get()
    }
}
