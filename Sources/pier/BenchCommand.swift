// `pier bench`: a load generator on libpier that measures throughput and latency of Pier (or etcd).
import ArgumentParser
import CPier
import Foundation
import Histogram
import Synchronization

/// Counters every worker thread adds to and the final merged latencies; lock-free counters
/// and a Mutex, so the class is Sendable without exceptions.
final class BenchTotals: Sendable {
    let ops = Atomic<Int>(0)
    let bytes = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let firstError = Mutex<PierError?>(nil)
    /// Latency in microseconds.
    let latency = Mutex(Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three))

    func fail(_ error: Error) {
        errors.add(1, ordering: .relaxed)
        let pierError = (error as? PierError) ?? PierError(code: 2, message: "\(error)")
        firstError.withLock { if $0 == nil { $0 = pierError } }
    }

    func merge(_ local: Histogram<UInt64>) {
        latency.withLock { $0.add(local) }
    }
}

func newHistogram() -> Histogram<UInt64> {
    Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
}

/// Everything a worker thread needs, copied into it.
struct BenchPlan: Sendable {
    var endpoint: String
    var keySize: Int
    var payloadSize: Int
    var keySpace: Int
    var deadline: UInt64
    var topic: String
    var partitions: Int32
    var inFlight: Int
    /// Calls (or records) per second for each worker thread; 0 runs flat out.
    var ratePerWorker: Double = 0

    func key(_ index: Int) -> [UInt8] {
        let digits = String(index)
        let pad = max(keySize - 1 - digits.count, 0)
        return Array(("k" + String(repeating: "0", count: pad) + digits).utf8)
    }

    var running: Bool { nowNanos() < deadline && !isInterrupted }
}

/// Spaces a worker's calls for --rate, so latency can be read below saturation too.
struct Pacer {
    let interval: UInt64
    var next = nowNanos()

    init(perSecond: Double) {
        interval = perSecond > 0 ? UInt64(1e9 / perSecond) : 0
    }

    /// Nanoseconds until the next call is due (0: now); advances the schedule.
    mutating func due() -> UInt64 {
        guard interval > 0 else { return 0 }
        next += interval
        let now = nowNanos()
        return next > now ? next - now : 0
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Generate load and report throughput and latency percentiles.",
        discussion: """
            Workloads: put, range, txn (KV; these also run against etcd), watch (fan-out: \
            connections x concurrency watchers on one key, one put every 20 ms, latency from put \
            to each event), produce and consume (the log).

            libpier makes one blocking unary call at a time per client, so put, range and txn run \
            one client (its own connection) per in-flight call, each on its own thread: \
            connections x concurrency clients. produce pipelines --concurrency batches on each \
            connection's produce stream, and watch multiplexes --concurrency watches on each \
            connection.
            """)

    @Argument(help: "put, range, txn, watch, produce or consume.")
    var workload: String

    @Option(help: "Server address, HOST:PORT.")
    var endpoint: String = "127.0.0.1:2379"

    @Option(help: "Connections (clients).")
    var connections: Int = 1

    @Option(help: "In-flight calls per connection (see above for how each workload uses it).")
    var concurrency: Int = 1

    @Option(help: "Value size in bytes.")
    var payloadSize: Int = 256

    @Option(help: "Key size in bytes.")
    var keySize: Int = 16

    @Option(help: "Distinct keys written or read (range prefills them).")
    var keySpace: Int = 1000

    @Option(help: "Seconds to run.")
    var duration: Double = 10

    @Option(help: "Target calls (put/range/txn) or records (produce, consume's producer) per second in all; 0: as fast as possible.")
    var rate: Double = 0

    @Option(help: "Partitions of the topic that produce and consume make (and delete afterwards).")
    var partitions: Int32 = 4

    @Flag(help: "Print the result as JSON.")
    var json = false

    @Flag(help: "Show the throughput line on stderr even when it is not a terminal.")
    var progress = false

    func validate() throws {
        guard ["put", "range", "txn", "watch", "produce", "consume"].contains(workload) else {
            throw ValidationError("unknown workload \"\(workload)\"; use put, range, txn, watch, produce or consume")
        }
        guard connections > 0, concurrency > 0, duration > 0, keySpace > 0, payloadSize >= 0, keySize > 0 else {
            throw ValidationError("--connections, --concurrency, --duration, --key-space and --key-size must be positive")
        }
        if ["watch", "consume"].contains(workload) && payloadSize < 8 {
            throw ValidationError("\(workload) carries the send time in the value: --payload-size must be at least 8")
        }
    }

    func run() throws {
        try runVerb {
            installInterruptHandler()
            let topic = "pier-bench-\(UInt32.random(in: 0...UInt32.max))"
            var plan = BenchPlan(endpoint: endpoint, keySize: keySize, payloadSize: payloadSize, keySpace: keySpace, deadline: 0,
                                 topic: topic, partitions: partitions, inFlight: concurrency)
            let setup = try PierClient(endpoint: endpoint, timeoutMs: 30_000)
            switch workload {
            case "range": try prefill(setup, plan)
            case "produce", "consume": _ = try setup.createTopic(topic, partitions: partitions, configs: [])
            default: break
            }
            defer { if ["produce", "consume"].contains(workload) { try? setup.deleteTopic(topic) } }

            let totals = BenchTotals()
            let group = DispatchGroup()
            let start = nowNanos()
            plan.deadline = start + UInt64(duration * 1e9)
            switch workload {
            case "put", "range", "txn": plan.ratePerWorker = rate / Double(connections * concurrency)
            case "produce": plan.ratePerWorker = rate / Double(connections)
            default: plan.ratePerWorker = rate
            }
            let frozen = plan
            func spawn(_ body: @escaping @Sendable () -> Void) {
                group.enter()
                let thread = Thread {
                    body()
                    group.leave()
                }
                thread.start()
            }
            switch workload {
            case "put", "range", "txn":
                for _ in 0..<(connections * concurrency) { spawn { unaryWorker(workload: workload, plan: frozen, totals: totals) } }
            case "watch":
                let ready = DispatchSemaphore(value: 0)
                for _ in 0..<connections { spawn { watchWorker(plan: frozen, watchers: concurrency, totals: totals, ready: ready) } }
                for _ in 0..<connections { ready.wait() }
                spawn { watchWriter(plan: frozen, totals: totals) }
            case "produce":
                for _ in 0..<connections { spawn { produceWorker(plan: frozen, totals: totals, measure: true) } }
            default:  // consume: subscribers follow every partition while one producer writes
                let ready = DispatchSemaphore(value: 0)
                for _ in 0..<connections { spawn { consumeWorker(plan: frozen, totals: totals, ready: ready) } }
                for _ in 0..<connections { ready.wait() }
                spawn { produceWorker(plan: frozen, totals: totals, measure: false) }
            }

            var line = ProgressLine(forced: progress)
            let unit = workload == "watch" ? "events" : (["produce", "consume"].contains(workload) ? "records" : "ops")
            while group.wait(timeout: .now() + 0.25) == .timedOut {
                line.update(count: totals.ops.load(ordering: .relaxed), bytes: totals.bytes.load(ordering: .relaxed), unit: unit)
            }
            line.finish()
            let seconds = Double(nowNanos() - start) / 1e9
            try report(totals: totals, seconds: seconds, unit: unit)
        }
    }

    /// Writes the keys range reads, in transactions of 100 puts so etcd accepts them too.
    private func prefill(_ client: PierClient, _ plan: BenchPlan) throws {
        let value = [UInt8](repeating: UInt8(ascii: "x"), count: plan.payloadSize)
        var index = 0
        while index < plan.keySpace {
            let keys = (index..<min(index + 100, plan.keySpace)).map(plan.key)
            index += keys.count
            try value.withUnsafeBytes { v in
                let storage = keys.map { k -> UnsafeMutableRawBufferPointer in
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: k.count, alignment: 1)
                    buffer.copyBytes(from: k)
                    return buffer
                }
                defer { storage.forEach { $0.deallocate() } }
                let ops = storage.map { k -> pier_op in
                    var op = pier_op()
                    op.type = Int32(PIER_OP_PUT)
                    op.key = UnsafeRawPointer(k.baseAddress)
                    op.key_len = k.count
                    op.value = v.baseAddress
                    op.value_len = v.count
                    return op
                }
                var result = pier_txn_result()
                try client.call { st in ops.withUnsafeBufferPointer { pier_kv_txn(client.raw, nil, 0, $0.baseAddress, $0.count, nil, 0, &result, st) } }
                pier_txn_result_free(&result)
            }
        }
    }

    private func report(totals: BenchTotals, seconds: Double, unit: String) throws {
        let ops = totals.ops.load(ordering: .relaxed)
        let bytes = totals.bytes.load(ordering: .relaxed)
        let errors = totals.errors.load(ordering: .relaxed)
        let histogram = totals.latency.withLock { $0 }
        let points: [(String, Double)] = [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)]
        var latency: [(String, Double)] = points.map { ($0.0, Double(histogram.valueAtPercentile($0.1)) / 1000) }
        latency.append(("max", Double(histogram.max) / 1000))
        let clients: String
        switch workload {
        case "watch": clients = "\(connections) connections x \(concurrency) watchers"
        case "produce": clients = "\(connections) producers x \(concurrency) batches in flight"
        case "consume": clients = "\(connections) consumers following \(partitions) partitions, 1 producer"
        default: clients = "\(connections * concurrency) clients (\(connections) x \(concurrency))"
        }
        if json {
            var object: [String: Any] = [
                "workload": workload, "endpoint": endpoint, "seconds": seconds, unit: ops, "errors": errors,
                "per_second": Double(ops) / seconds, "mb_per_second": Double(bytes) / seconds / 1e6,
                "connections": connections, "concurrency": concurrency, "payload_size": payloadSize, "key_size": keySize,
                "latency_ms": Dictionary(uniqueKeysWithValues: latency),
            ]
            if let error = totals.firstError.withLock({ $0 }) { object["first_error"] = error.description }
            printJSON(object)
        } else {
            print(String(format: "%@ against %@: %.1f s, %@, %d-byte values", workload, endpoint, seconds, clients, payloadSize))
            print(String(format: "  %d %@, %.1f %@/s, %.2f MB/s, %d errors", ops, unit, Double(ops) / seconds, unit,
                         Double(bytes) / seconds / 1e6, errors))
            print("  latency ms: " + latency.map { String(format: "%@ %.3f", $0.0, $0.1) }.joined(separator: "  "))
            if let error = totals.firstError.withLock({ $0 }) { print("  first error: \(error)") }
        }
        if ops == 0, let error = totals.firstError.withLock({ $0 }) { throw error }
    }
}

/// put, range or txn in a loop on one client: one call in flight at a time.
private func unaryWorker(workload: String, plan: BenchPlan, totals: BenchTotals) {
    var histogram = newHistogram()
    defer { totals.merge(histogram) }
    let client: PierClient
    do { client = try PierClient(endpoint: plan.endpoint) } catch { return totals.fail(error) }
    let keys = (0..<plan.keySpace).map(plan.key)
    let value = [UInt8](repeating: UInt8(ascii: "v"), count: plan.payloadSize)
    var generator = SystemRandomNumberGenerator()
    var pacer = Pacer(perSecond: plan.ratePerWorker)
    value.withUnsafeBytes { v in
        while plan.running {
            let wait = pacer.due()
            if wait > 0 { usleep(UInt32(wait / 1000)) }
            let key = keys[Int.random(in: 0..<keys.count, using: &generator)]
            let begin = nowNanos()
            do {
                try key.withUnsafeBytes { k in
                    switch workload {
                    case "put": try client.putDiscarding(k, v)
                    case "txn": try client.txnPut(k, v)
                    default: try client.getDiscarding(k)
                    }
                }
            } catch {
                totals.fail(error)
                if (error as? PierError)?.code == Int32(PIER_UNAVAILABLE) { usleep(100_000) }
                continue
            }
            _ = histogram.record((nowNanos() - begin) / 1000)
            totals.ops.add(1, ordering: .relaxed)
            totals.bytes.add(key.count + v.count, ordering: .relaxed)
        }
    }
}

/// Key every watcher watches and the writer writes; the value starts with the send time.
private let watchKey = Array("/pier-bench/watch".utf8)

private func watchWorker(plan: BenchPlan, watchers: Int, totals: BenchTotals, ready: DispatchSemaphore) {
    var histogram = newHistogram()
    defer { totals.merge(histogram) }
    var signalled = false
    defer { if !signalled { ready.signal() } }
    let client: PierClient
    do { client = try PierClient(endpoint: plan.endpoint) } catch { return totals.fail(error) }
    var watches: [Watch] = []
    var ended = false
    do {
        for _ in 0..<watchers {
            watches.append(try client.watch(watchKey, onEvents: { _, events in
                let now = nowNanos()
                for event in events where event.kv.value.count >= 8 {
                    let sent = event.kv.value.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                    _ = histogram.record(now > sent ? (now - sent) / 1000 : 0)
                    totals.ops.add(1, ordering: .relaxed)
                    totals.bytes.add(event.kv.value.count, ordering: .relaxed)
                }
            }, onEnd: { error in
                ended = true
                totals.fail(error)
            }))
        }
    } catch {
        return totals.fail(error)
    }
    ready.signal()
    signalled = true
    // Events still in flight at the deadline are counted until the writer has surely stopped.
    while !ended && (plan.running || nowNanos() < plan.deadline + 200_000_000) && !isInterrupted {
        do { try client.poll(timeoutMs: 50) } catch { return totals.fail(error) }
    }
    watches.forEach { $0.cancel() }
}

private func watchWriter(plan: BenchPlan, totals: BenchTotals) {
    let client: PierClient
    do { client = try PierClient(endpoint: plan.endpoint) } catch { return totals.fail(error) }
    var value = [UInt8](repeating: UInt8(ascii: "w"), count: plan.payloadSize)
    var next = nowNanos()
    while plan.running {
        var sent = nowNanos()
        withUnsafeBytes(of: &sent) { raw in value.withUnsafeMutableBytes { $0.copyMemory(from: raw) } }
        do {
            try watchKey.withUnsafeBytes { k in try value.withUnsafeBytes { try client.putDiscarding(k, $0) } }
        } catch {
            totals.fail(error)
        }
        next += 20_000_000
        let now = nowNanos()
        if next > now { usleep(UInt32((next - now) / 1000)) }
    }
}

/// Per-producer ack accounting reached from libpier's ack callback through `user`. Acks come
/// back in send order within a partition, so a FIFO of send times per partition pairs them up.
private final class ProduceAcks {
    var histogram = newHistogram()
    var measure = true
    var sendTimes: [[UInt64]]
    var heads: [Int]
    var acked = 0
    var ackedBytes = 0
    var payloadSize = 0
    var errors: [PierError] = []

    init(partitions: Int) {
        sendTimes = Array(repeating: [], count: partitions)
        heads = Array(repeating: 0, count: partitions)
    }

    func ack(_ ack: pier_produce_ack) {
        let p = Int(ack.partition)
        guard p >= 0 && p < sendTimes.count && heads[p] < sendTimes[p].count else { return }
        let sent = sendTimes[p][heads[p]]
        heads[p] += 1
        // Drop the consumed front now and then instead of growing for the whole run.
        if heads[p] > 4096 {
            sendTimes[p].removeFirst(heads[p])
            heads[p] = 0
        }
        if ack.status.code != 0 {
            errors.append(PierError(ack.status))
            return
        }
        acked += 1
        ackedBytes += payloadSize
        if measure {
            let now = nowNanos()
            _ = histogram.record(now > sent ? (now - sent) / 1000 : 0)
        }
    }
}

/// Sends keyless records round-robin over the partitions as fast as the pipeline allows
/// (--concurrency requests in flight); latency is send to acknowledgement.
private func produceWorker(plan: BenchPlan, totals: BenchTotals, measure: Bool) {
    let acks = ProduceAcks(partitions: Int(plan.partitions))
    acks.measure = measure
    acks.payloadSize = plan.payloadSize
    let client: PierClient
    let producer: Producer
    do {
        client = try PierClient(endpoint: plan.endpoint, timeoutMs: 30_000)
        producer = try client.producer(topic: plan.topic, idempotent: false, maxInFlight: plan.inFlight)
    } catch {
        return totals.fail(error)
    }
    let onAck: pier_ack_fn = { user, ack in
        Unmanaged<ProduceAcks>.fromOpaque(user!).takeUnretainedValue().ack(ack!.pointee)
    }
    let context = Unmanaged.passUnretained(acks).toOpaque()
    var value = [UInt8](repeating: UInt8(ascii: "r"), count: plan.payloadSize)
    var sent = 0
    var pacer = Pacer(perSecond: plan.ratePerWorker)
    var reported = (acked: 0, bytes: 0, errors: 0)
    func publish() {
        // Only the producing thread touches `acks`; the totals see its counts in steps.
        totals.ops.add(measure ? acks.acked - reported.acked : 0, ordering: .relaxed)
        totals.bytes.add(measure ? acks.ackedBytes - reported.bytes : 0, ordering: .relaxed)
        for error in acks.errors[reported.errors...] { totals.fail(error) }
        reported = (acks.acked, acks.ackedBytes, acks.errors.count)
    }
    while plan.running {
        // Waits of a millisecond or more run the event loop so acks keep arriving meanwhile.
        let wait = pacer.due()
        if wait >= 1_000_000 {
            try? client.poll(timeoutMs: Int32(wait / 1_000_000))
        } else if wait > 0 {
            // Linger timers fire only inside the loop: run it before a short sleep too.
            try? client.poll(timeoutMs: 0)
            usleep(UInt32(wait / 1000))
        }
        let partition = Int32(sent % Int(plan.partitions))
        var stamp = nowNanos()
        if value.count >= 8 { withUnsafeBytes(of: &stamp) { raw in value.withUnsafeMutableBytes { $0.copyMemory(from: raw) } } }
        // Recorded before the send: a send may run the loop and deliver this record's ack.
        acks.sendTimes[Int(partition)].append(stamp)
        do {
            try value.withUnsafeBytes { v in try producer.send(key: nil, value: v, partition: partition, fn: onAck, user: context) }
        } catch {
            totals.fail(error)
            break
        }
        sent += 1
        if sent % 256 == 0 {
            try? client.poll(timeoutMs: 0)
            publish()
        }
    }
    do { try producer.flush() } catch { totals.fail(error) }
    publish()
    if measure { totals.merge(acks.histogram) }
}

/// Follows every partition from the end; latency is the producer's send time (in the value) to
/// delivery here.
private func consumeWorker(plan: BenchPlan, totals: BenchTotals, ready: DispatchSemaphore) {
    var histogram = newHistogram()
    defer { totals.merge(histogram) }
    var signalled = false
    defer { if !signalled { ready.signal() } }
    let client: PierClient
    do { client = try PierClient(endpoint: plan.endpoint, timeoutMs: 30_000) } catch { return totals.fail(error) }
    var subscriptions: [Subscription] = []
    var ended = false
    do {
        for p in 0..<plan.partitions {
            let start = try client.listOffset(plan.topic, partition: p, spec: Int32(PIER_OFFSET_LATEST))
            subscriptions.append(try client.subscribe(plan.topic, partition: p, position: Int32(PIER_START_OFFSET), value: start,
                                                      onRecords: { records, _ in
                let now = nowNanos()
                var bytes = 0
                for record in records where record.value_len >= 8 {
                    let sent = UnsafeRawPointer(record.value!).loadUnaligned(as: UInt64.self)
                    _ = histogram.record(now > sent ? (now - sent) / 1000 : 0)
                    bytes += record.value_len
                }
                totals.ops.add(records.count, ordering: .relaxed)
                totals.bytes.add(bytes, ordering: .relaxed)
            }, onEnd: { error in
                ended = true
                totals.fail(error)
            }))
        }
    } catch {
        return totals.fail(error)
    }
    ready.signal()
    signalled = true
    // Keep reading a moment past the deadline so records sent just before it are delivered.
    while !ended && (plan.running || nowNanos() < plan.deadline + 500_000_000) && !isInterrupted {
        do { try client.poll(timeoutMs: 50) } catch { return totals.fail(error) }
    }
    subscriptions.forEach { $0.cancel() }
}
