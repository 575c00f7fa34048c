// Group commit: many concurrent appenders all complete, with distinct consecutive indexes, all durable.
import Foundation
import Testing
@testable import PierStorage

final class Collected: @unchecked Sendable {  // guarded by `lock`
    let lock = NSLock()
    var indexes: [UInt64] = []
    var failures = 0
}

@Suite struct GroupCommitTests {
    @Test func everyCallerCompletes() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let log = CallbackLog(log: try WriteAheadLog(directory: dir))
        let collected = Collected()
        let group = DispatchGroup()
        let callers = 400
        DispatchQueue.concurrentPerform(iterations: callers) { i in
            group.enter()
            log.append(bytes("payload-\(i)")) { result in
                collected.lock.lock()
                switch result {
                case .success(let index): collected.indexes.append(index)
                case .failure: collected.failures += 1
                }
                collected.lock.unlock()
                group.leave()
            }
        }
        group.wait()
        #expect(collected.failures == 0)
        #expect(collected.indexes.sorted() == (1...UInt64(callers)).map { $0 })
        // Grouping happened: never more fsync batches than callers.
        #expect(log.batchCount <= UInt64(callers))
        log.close()

        let reopened = try WriteAheadLog(directory: dir)
        var payloads = Set<[UInt8]>()
        try reopened.forEach(from: 1) { _, p in payloads.insert(p) }
        #expect(payloads.count == callers)
    }

    @Test func asyncAppendAndClose() async throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let log = CallbackLog(log: try WriteAheadLog(directory: dir))
        let a = try await log.append(bytes("a"))
        let b = try await log.append(bytes("b"))
        #expect(a == 1 && b == 2)
        log.close()
        await #expect(throws: StorageError.closed) { try await log.append(bytes("c")) }
    }

    @Test func completionsRunInLogOrder() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let collected = Collected()
        let committer = GroupCommitter<Int>(
            log: try WriteAheadLog(directory: dir),
            committed: { batch in
                collected.lock.lock()
                collected.indexes.append(contentsOf: batch.map(\.index))
                collected.lock.unlock()
            },
            failed: { _, _ in })
        for i in 0..<100 { try committer.submit(bytes("\(i)"), context: i) }
        committer.close()
        #expect(collected.indexes == (1...100).map { UInt64($0) })
    }
}
