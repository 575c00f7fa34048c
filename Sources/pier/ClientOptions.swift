// What every client verb shares: the endpoint flag, JSON output, errors, Ctrl-C and progress lines.
import ArgumentParser
import Foundation
import Synchronization

struct ClientOptions: ParsableArguments {
    @Option(help: "Server address, HOST:PORT (Pier or, for kv/lease, etcd).")
    var endpoint: String = "127.0.0.1:2379"

    @Flag(help: "Print JSON for scripts instead of text for people.")
    var json = false

    @Flag(help: "Show the throughput line on stderr even when it is not a terminal.")
    var progress = false

    @Option(help: "Deadline of each call, in seconds.")
    var timeout: Double = 10

    /// Connects; a failure becomes the same "CODE: message" error as a failed call.
    func connect() throws -> PierClient {
        try PierClient(endpoint: endpoint, timeoutMs: Int64(timeout * 1000))
    }
}

/// Set by SIGINT so follow loops (watch, consume, keep-alive, bench) stop cleanly: they flush,
/// commit and print their summary instead of dying mid-line.
let interrupted = Atomic<Bool>(false)

func installInterruptHandler() {
    signal(SIGINT) { _ in interrupted.store(true, ordering: .relaxed) }
    signal(SIGTERM) { _ in interrupted.store(true, ordering: .relaxed) }
}

var isInterrupted: Bool { interrupted.load(ordering: .relaxed) }

/// Runs a verb: a failed call prints its gRPC code name and message and exits 1.
func runVerb(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as PierError {
        FileHandle.standardError.write(Data("pier: \(error.description)\n".utf8))
        throw ExitCode(1)
    }
}

/// Text for people: UTF-8 as is, anything else escaped so the terminal stays sane.
func display(_ bytes: [UInt8]) -> String {
    if let text = String(validating: bytes, as: UTF8.self) { return text }
    return bytes.map { (32..<127).contains($0) ? String(UnicodeScalar($0)) : String(format: "\\x%02x", $0) }.joined()
}

/// JSON for scripts: UTF-8 keys and values as strings; binary ones under "<name>_base64".
func putBytes(_ object: inout [String: Any], _ name: String, _ bytes: [UInt8]) {
    if let text = String(validating: bytes, as: UTF8.self) {
        object[name] = text
    } else {
        object[name + "_base64"] = Data(bytes).base64EncodedString()
    }
}

func kvJSON(_ kv: KeyValue) -> [String: Any] {
    var object: [String: Any] = [
        "create_revision": kv.createRevision, "mod_revision": kv.modRevision, "version": kv.version, "lease": kv.lease,
    ]
    putBytes(&object, "key", Array(kv.key))
    putBytes(&object, "value", Array(kv.value))
    return object
}

/// Prints one JSON document on one line (so streams are JSON lines).
func printJSON(_ object: Any) {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

/// stdout is block-buffered when piped; streaming verbs flush per line so readers see events live.
func printLine(_ text: String) {
    print(text)
    fflush(nil)
}

func leaseIDText(_ id: Int64) -> String { String(UInt64(bitPattern: id), radix: 16) }

/// Lease ids are shown in hex as etcdctl shows them; accept that form (decimal with a leading "#").
func parseLeaseID(_ text: String) throws -> Int64 {
    if text.hasPrefix("#"), let value = Int64(text.dropFirst()) { return value }
    var hex = Substring(text)
    if hex.hasPrefix("0x") { hex = hex.dropFirst(2) }
    guard let value = UInt64(hex, radix: 16) else { throw ValidationError("lease id \"\(text)\" is not hex (as `lease grant` prints it)") }
    return Int64(bitPattern: value)
}

/// A throughput line on stderr for long runs: shown only on a terminal, or when asked for.
struct ProgressLine {
    let enabled: Bool
    private let start = Date()
    private var last = Date()

    init(forced: Bool) {
        enabled = forced || isatty(STDERR_FILENO) != 0
    }

    /// Rewrites the line at most twice a second.
    mutating func update(count: Int, bytes: Int, unit: String) {
        guard enabled else { return }
        let now = Date()
        guard now.timeIntervalSince(last) >= 0.5 else { return }
        last = now
        let elapsed = max(now.timeIntervalSince(start), 0.001)
        let line = String(format: "\r%d %@, %.0f %@/s, %.2f MB/s, %.1f s", count, unit, Double(count) / elapsed, unit,
                          Double(bytes) / elapsed / 1e6, elapsed)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        if enabled && Date().timeIntervalSince(start) >= 0.5 { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// Monotonic nanoseconds, for latencies measured in one process.
@inline(__always) func nowNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
