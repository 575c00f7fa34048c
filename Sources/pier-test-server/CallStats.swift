// Counts how the test service's calls ended, and reads the process's resident memory.
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Counters the tests read through `Echo/Stats` to check what handlers observed.
final class CallStats: Sendable {
    private let cancelled = Atomic<UInt64>(0)
    private let completed = Atomic<UInt64>(0)

    var cancelledCalls: UInt64 { cancelled.load(ordering: .relaxed) }
    var completedCalls: UInt64 { completed.load(ordering: .relaxed) }

    func recordCancelled() { cancelled.add(1, ordering: .relaxed) }
    func recordCompleted() { completed.add(1, ordering: .relaxed) }

    /// Resident set size from /proc/self/statm (second field, in pages); 0 where unavailable.
    static func residentBytes() -> UInt64 {
        guard let file = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        guard fgets(&line, Int32(line.count), file) != nil else { return 0 }
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let fields = text.split(separator: " ")
        guard fields.count >= 2, let pages = UInt64(fields[1]) else { return 0 }
        return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
    }
}
