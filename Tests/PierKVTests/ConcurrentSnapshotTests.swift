// Snapshots taken while writes and compactions run are exactly the state at their applied index.
import Foundation
import Testing
@testable import PierKV

@Suite struct ConcurrentSnapshotTests {
    /// A deterministic workload: every op is one command that succeeds.
    static func op(_ i: Int) -> Command {
        if i > 0 && i % 97 == 0 { return .compact(CompactionRequest(revision: Int64(i / 2))) }
        if i % 13 == 0 { return .deleteRange(DeleteRangeRequest(key: Array("k\(i % 40)".utf8))) }
        return .put(PutRequest(key: Array("k\(i % 40)".utf8), value: Array("v\(i)".utf8)))
    }

    func fingerprint(_ store: KVStore) throws -> [String] {
        var out = ["rev=\(store.currentRevision) compacted=\(store.compactedRevision) index=\(store.status().raftIndex)"]
        for rev in max(store.compactedRevision, 1)...store.currentRevision {
            out.append("\(rev):" + (try store.all(revision: rev)).map {
                "\(s($0.key))=\(s($0.value))@\($0.createRevision)/\($0.modRevision)/\($0.version)"
            }.joined(separator: ","))
        }
        out.append("hash=\(try store.hashKV().hash)")
        return out
    }

    @Test func snapshotDuringWrites() async throws {
        let store = try memoryStore()
        let total = 1500
        let snapshots = SnapshotBox()
        let writer = Task {
            for i in 1...total {
                let r: Result<CommandResult, KVError> = await withCheckedContinuation { c in
                    store.propose(Self.op(i)) { c.resume(returning: $0) }
                }
                if case .failure(let e) = r { Issue.record("op \(i) failed: \(e)") }
            }
        }
        let taker = Task.detached {
            for _ in 0..<8 {
                if let bytes = try? store.snapshot(keysPerLock: 3) { snapshots.add(bytes) }
                try? await Task.sleep(nanoseconds: 1_000_000)
            }
        }
        await writer.value
        await taker.value
        #expect(!snapshots.all.isEmpty)

        for bytes in snapshots.all {
            let dir = makeTemporaryDirectory()
            defer { removeDirectory(dir) }
            try KVStore.restore(snapshot: bytes, into: dir)
            let restored = try KVStore(options: KVOptions(dataDirectory: dir))
            let applied = Int(restored.status().raftIndex)
            let reference = try memoryStore()
            if applied > 0 {
                for i in 1...applied {
                    _ = await withCheckedContinuation { c in reference.propose(Self.op(i)) { c.resume(returning: $0) } }
                }
            }
            #expect(try fingerprint(restored) == fingerprint(reference))
            restored.close()
        }
    }
}

final class SnapshotBox: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var items: [[UInt8]] = []
    func add(_ b: [UInt8]) { lock.lock(); items.append(b); lock.unlock() }
    var all: [[UInt8]] { lock.lock(); defer { lock.unlock() }; return items }
}
