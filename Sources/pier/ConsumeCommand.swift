// `pier consume TOPIC`: print a topic's records, optionally following the tail or as a group member.
import ArgumentParser
import CPier
import Foundation

struct Consume: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Print a topic's records (values, one per line) from a position; --follow waits for new ones.")

    @OptionGroup var client: ClientOptions
    @Argument var topic: String

    @Option(help: "Where to start: earliest, latest or an offset (a group resumes from its commit).")
    var from: String = "earliest"

    @Option(help: "Start at the first record at or after this time (RFC 3339, e.g. 2026-01-02T15:04:05Z).")
    var fromTime: String?

    @Option(help: "Read only this partition.")
    var partition: Int32?

    @Flag(help: "Keep waiting for new records until Ctrl-C (or --count).")
    var follow = false

    @Option(help: "Join this consumer group, read its share of partitions and commit what was printed.")
    var group: String?

    @Option(help: "Stop after this many records (0: no limit).")
    var count: Int = 0

    @Flag(help: "Print KEY<TAB>VALUE instead of the value alone.")
    var printKey = false

    /// One partition being read: where it is and where a non-following read stops.
    final class Reader {
        let partition: Int32
        var next: Int64
        var committed: Int64
        let end: Int64?
        var subscription: Subscription?

        init(partition: Int32, next: Int64, end: Int64?) {
            self.partition = partition
            self.next = next
            self.committed = next
            self.end = end
        }

        var done: Bool { end.map { next >= $0 } ?? false }
    }

    func run() throws {
        let startTime = try fromTime.map { text -> Int64 in
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let plain = ISO8601DateFormatter()
            guard let date = formatter.date(from: text) ?? plain.date(from: text) else {
                throw ValidationError("--from-time wants RFC 3339, e.g. 2026-01-02T15:04:05Z; got \"\(text)\"")
            }
            return Int64(date.timeIntervalSince1970 * 1000)
        }
        if group != nil && partition != nil {
            throw ValidationError("--group reads the partitions the group assigns; drop --partition")
        }
        if !["earliest", "latest"].contains(from) && Int64(from) == nil {
            throw ValidationError("--from wants earliest, latest or an offset; got \"\(from)\"")
        }
        try runVerb {
            installInterruptHandler()
            let c = try client.connect()
            var printed = 0
            var failure: PierError?
            var progress = ProgressLine(forced: client.progress)
            var bytesRead = 0
            let json = client.json
            let limit = count

            let info = try c.describeTopic(topic)
            let ends = Dictionary(info.partitions.map { ($0.partition, $0) }, uniquingKeysWith: { a, _ in a })

            /// Where a partition starts when the group has no commit for it (or there is no group).
            func startOffset(_ p: Int32) throws -> Int64 {
                if let startTime { return try c.listOffset(topic, partition: p, spec: Int32(PIER_OFFSET_TIMESTAMP), timestampMs: startTime) }
                switch from {
                case "earliest": return try c.listOffset(topic, partition: p, spec: Int32(PIER_OFFSET_EARLIEST))
                case "latest": return try c.listOffset(topic, partition: p, spec: Int32(PIER_OFFSET_LATEST))
                default: return Int64(from)!
                }
            }

            func open(_ p: Int32) throws -> Reader {
                var next = try startOffset(p)
                if let group {
                    let committed = try c.committedOffset(group: group, topic: topic, partition: p)
                    if committed >= 0 { next = committed }
                }
                let reader = Reader(partition: p, next: next, end: follow ? nil : ends[p]?.logEndOffset)
                if reader.done { return reader }
                reader.subscription = try c.subscribe(topic, partition: p, position: Int32(PIER_START_OFFSET), value: next, onRecords: { records, _ in
                    for record in records {
                        if limit > 0 && printed >= limit { return }
                        if let end = reader.end, record.offset >= end { return }
                        if record.offset < reader.next { continue }
                        reader.next = record.offset + 1
                        printed += 1
                        bytesRead += record.value_len
                        emit(Record(record), json: json)
                    }
                }, onEnd: { if failure == nil { failure = $0 } })
                return reader
            }

            var readers: [Reader] = []
            var member: GroupMember?
            var reassigned = false
            if let group {
                member = try c.joinGroup(group, topics: [topic], onAssignment: { _, _ in reassigned = true },
                                         onEnd: { if failure == nil { failure = $0 } })
                reassigned = false
                readers = try member!.assignment.filter { $0.topic == topic }.map { try open($0.partition) }
            } else {
                let partitions = partition.map { [$0] } ?? info.partitions.map(\.partition).sorted()
                readers = try partitions.map(open)
            }

            func commit() throws {
                guard let member else { return }
                let moved = readers.filter { $0.next != $0.committed }
                if moved.isEmpty { return }
                try member.commit(moved.map { CommittedOffset(topic: topic, partition: $0.partition, offset: $0.next) })
                for reader in moved { reader.committed = reader.next }
            }

            var lastCommit = Date()
            while !isInterrupted && failure == nil && !(limit > 0 && printed >= limit) && !(readers.allSatisfy(\.done) && !follow) {
                try c.poll(timeoutMs: 200)
                progress.update(count: printed, bytes: bytesRead, unit: "records")
                if reassigned, let member {
                    // The group moved partitions: commit what we read, then follow the new share.
                    reassigned = false
                    try? commit()
                    readers.forEach { $0.subscription?.cancel() }
                    readers = try member.assignment.filter { $0.topic == topic }.map { try open($0.partition) }
                }
                if Date().timeIntervalSince(lastCommit) >= 1 {
                    try commit()
                    lastCommit = Date()
                }
            }
            readers.forEach { $0.subscription?.cancel() }
            try commit()
            member?.leave()
            progress.finish()
            fflush(nil)
            if !json { FileHandle.standardError.write(Data("consumed \(printed) records\n".utf8)) }
            if let failure { throw failure }
        }
    }

    private func emit(_ record: Record, json: Bool) {
        if json {
            var object: [String: Any] = ["partition": record.partition, "offset": record.offset, "timestamp_ms": record.timestampMs]
            putBytes(&object, "key", record.key)
            putBytes(&object, "value", record.value)
            printJSON(object)
        } else if printKey {
            print("\(display(record.key))\t\(display(record.value))")
        } else {
            print(display(record.value))
        }
        if follow { fflush(nil) }
    }
}
