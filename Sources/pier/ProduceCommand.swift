// `pier produce TOPIC`: one record per input line, batched and pipelined by libpier's producer.
import ArgumentParser
import CPier
import Foundation

/// Ack counts, reached from libpier's ack callback through its `user` pointer.
final class AckCounter {
    var acked = 0
    var failed = 0
    var duplicates = 0
    var firstError: PierError?
}

struct Produce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Append lines from stdin (or --file) to a topic, one record per line.")

    @OptionGroup var client: ClientOptions
    @Argument var topic: String

    @Option(help: "Read lines from this file instead of stdin.")
    var file: String?

    @Option(help: "Split each line at the first SEP into key and value (no key otherwise).")
    var keySeparator: String?

    @Option(help: "Write to this partition (default: by key, keyless records spread round-robin).")
    var partition: Int32 = -1

    @Flag(inversion: .prefixedNo, help: "Number batches so a resend after a connection loss is stored once.")
    var idempotent = true

    @Option(help: "Most records per batch (0: libpier's default, 500).")
    var batchSize: Int = 0

    @Option(help: "Milliseconds a batch waits for more records before it is sent.")
    var lingerMs: Int64 = 5

    func run() throws {
        if let keySeparator, keySeparator.isEmpty { throw ValidationError("--key-separator must not be empty") }
        try runVerb {
            guard let input = file.map({ fopen($0, "r") }) ?? fdopen(STDIN_FILENO, "r") else {
                throw ValidationError("cannot open \(file ?? "stdin"): \(String(cString: strerror(errno)))")
            }
            defer { fclose(input) }
            let c = try client.connect()
            let producer = try c.producer(topic: topic, idempotent: idempotent, batchRecords: batchSize, lingerMs: lingerMs)
            let counter = AckCounter()
            let user = Unmanaged.passUnretained(counter).toOpaque()
            let onAck: pier_ack_fn = { user, ack in
                let counter = Unmanaged<AckCounter>.fromOpaque(user!).takeUnretainedValue()
                let ack = ack!.pointee
                if ack.status.code == 0 {
                    counter.acked += 1
                    if ack.duplicate { counter.duplicates += 1 }
                } else {
                    counter.failed += 1
                    if counter.firstError == nil { counter.firstError = PierError(ack.status) }
                }
            }
            let separator = keySeparator.map { Array($0.utf8) }
            var progress = ProgressLine(forced: client.progress)
            let start = Date()
            var sent = 0
            var bytesSent = 0
            var line: UnsafeMutablePointer<CChar>?
            var capacity = 0
            defer { free(line) }
            while true {
                var n = getline(&line, &capacity, input)
                if n < 0 { break }
                guard let text = line else { break }
                if n > 0 && text[n - 1] == 10 { n -= 1 }
                if n > 0 && text[n - 1] == 13 { n -= 1 }
                let raw = UnsafeRawBufferPointer(start: text, count: n)
                if let separator, let cut = firstIndex(of: separator, in: raw) {
                    let key = UnsafeRawBufferPointer(rebasing: raw[..<cut])
                    let value = UnsafeRawBufferPointer(rebasing: raw[(cut + separator.count)...])
                    try producer.send(key: key, value: value, partition: partition, fn: onAck, user: user)
                } else {
                    try producer.send(key: nil, value: raw, partition: partition, fn: onAck, user: user)
                }
                sent += 1
                bytesSent += n
                if sent % 1024 == 0 {
                    // Let acknowledgements arrive while input keeps coming.
                    try c.poll(timeoutMs: 0)
                    progress.update(count: counter.acked, bytes: bytesSent, unit: "records")
                }
            }
            let flushError: PierError?
            do {
                try producer.flush()
                flushError = nil
            } catch let error as PierError {
                flushError = error
            }
            progress.finish()
            let seconds = Date().timeIntervalSince(start)
            if client.json {
                printJSON(["topic": topic, "records": sent, "acked": counter.acked, "failed": counter.failed,
                           "duplicates": counter.duplicates, "seconds": seconds,
                           "records_per_second": seconds > 0 ? Double(counter.acked) / seconds : 0] as [String: Any])
            } else {
                print(String(format: "%d records acknowledged in %.2f s (%.0f records/s)%@", counter.acked, seconds,
                             seconds > 0 ? Double(counter.acked) / seconds : 0,
                             counter.failed > 0 ? ", \(counter.failed) failed" : ""))
            }
            if let error = counter.firstError ?? flushError { throw error }
        }
    }

    private func firstIndex(of separator: [UInt8], in raw: UnsafeRawBufferPointer) -> Int? {
        guard raw.count >= separator.count else { return nil }
        var i = 0
        while i + separator.count <= raw.count {
            if raw[i] == separator[0] {
                var match = true
                for j in 1..<separator.count where raw[i + j] != separator[j] { match = false; break }
                if match { return i }
            }
            i += 1
        }
        return nil
    }
}
