// `pier kv put/get/del/watch`: the etcd-compatible key-value store from the command line.
import ArgumentParser
import Foundation

struct KV: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv",
        abstract: "Read and write the key-value store (works against etcd too).",
        subcommands: [KVPut.self, KVGet.self, KVDelete.self, KVWatch.self]
    )
}

/// --prefix and --from-key turn one key into a range, as in etcdctl.
struct RangeFlags: ParsableArguments {
    @Flag(help: "Every key starting with KEY.")
    var prefix = false

    @Flag(help: "Every key from KEY on.")
    var fromKey = false

    func rangeEnd(for key: [UInt8]) throws -> [UInt8]? {
        if prefix && fromKey { throw ValidationError("--prefix and --from-key exclude each other") }
        if prefix { return prefixEnd(key) }
        if fromKey { return [0] }
        return nil
    }
}

struct KVPut: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "put", abstract: "Set KEY to VALUE.")

    @OptionGroup var client: ClientOptions
    @Argument var key: String
    @Argument var value: String

    @Option(help: "Attach the key to this lease (hex id, as `lease grant` prints it).")
    var lease: String?

    @Flag(help: "Print the value the key had before.")
    var prevKv = false

    func run() throws {
        try runVerb {
            let leaseID = try lease.map(parseLeaseID) ?? 0
            let c = try client.connect()
            let result = try c.put(Array(key.utf8), Array(value.utf8), lease: leaseID, prevKV: prevKv)
            if client.json {
                var object: [String: Any] = ["revision": result.revision]
                if let prev = result.prev { object["prev_kv"] = kvJSON(prev) }
                printJSON(object)
            } else {
                print("OK (revision \(result.revision))")
                if let prev = result.prev { print("previous: \(display(prev.value))") }
            }
        }
    }
}

struct KVGet: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Read KEY, or a range of keys.")

    @OptionGroup var client: ClientOptions
    @Argument var key: String
    @OptionGroup var range: RangeFlags

    @Option(help: "Read as of this revision (0: latest).")
    var rev: Int64 = 0

    @Option(help: "At most this many keys (0: no limit).")
    var limit: Int64 = 0

    @Flag(help: "Print keys without values.")
    var keysOnly = false

    @Flag(help: "Print only how many keys match.")
    var countOnly = false

    func run() throws {
        try runVerb {
            let k = Array(key.utf8)
            let end = try range.rangeEnd(for: k)
            let c = try client.connect()
            let result = try c.get(k, rangeEnd: end, limit: limit, revision: rev, keysOnly: keysOnly, countOnly: countOnly)
            if client.json {
                printJSON(["revision": result.revision, "count": result.count, "more": result.more,
                           "kvs": result.kvs.map(kvJSON)] as [String: Any])
                return
            }
            if countOnly {
                print(result.count)
                return
            }
            // etcdctl's layout (key line, value line) so people moving over read it at once.
            for kv in result.kvs {
                print(display(kv.key))
                if !keysOnly { print(display(kv.value)) }
            }
            if result.more {
                FileHandle.standardError.write(Data("(\(result.kvs.count) of \(result.count) keys; raise --limit for more)\n".utf8))
            }
        }
    }
}

struct KVDelete: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "del", abstract: "Delete KEY, or a range of keys.")

    @OptionGroup var client: ClientOptions
    @Argument var key: String
    @OptionGroup var range: RangeFlags

    @Flag(help: "Print the deleted pairs.")
    var prevKv = false

    func run() throws {
        try runVerb {
            let k = Array(key.utf8)
            let end = try range.rangeEnd(for: k)
            let c = try client.connect()
            let result = try c.delete(k, rangeEnd: end, prevKV: prevKv)
            if client.json {
                printJSON(["revision": result.revision, "deleted": result.deleted, "prev_kvs": result.prev.map(kvJSON)] as [String: Any])
            } else {
                print(result.deleted)
                for kv in result.prev {
                    print(display(kv.key))
                    print(display(kv.value))
                }
            }
        }
    }
}

struct KVWatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Print changes to KEY (or a range) as they happen, until Ctrl-C or --count events.")

    @OptionGroup var client: ClientOptions
    @Argument var key: String
    @OptionGroup var range: RangeFlags

    @Option(help: "Start from this revision, replaying history (0: from now).")
    var rev: Int64 = 0

    @Option(help: "Stop after this many events (0: run until Ctrl-C).")
    var count: Int = 0

    @Flag(help: "Include each key's previous value.")
    var prevKv = false

    func run() throws {
        try runVerb {
            let k = Array(key.utf8)
            let end = try range.rangeEnd(for: k)
            installInterruptHandler()
            let c = try client.connect()
            var seen = 0
            var failure: PierError?
            let json = client.json
            let limit = count
            let watch = try c.watch(k, rangeEnd: end, startRevision: rev, prevKV: prevKv, onEvents: { revision, events in
                for event in events where limit == 0 || seen < limit {
                    seen += 1
                    if json {
                        var object: [String: Any] = ["type": event.isDelete ? "DELETE" : "PUT", "revision": revision, "kv": kvJSON(event.kv)]
                        if let prev = event.prevKV { object["prev_kv"] = kvJSON(prev) }
                        printJSON(object)
                    } else if event.isDelete {
                        printLine("DELETE \(display(event.kv.key))")
                    } else {
                        printLine("PUT \(display(event.kv.key)) \(display(event.kv.value))")
                    }
                }
                fflush(nil)
            }, onEnd: { failure = $0 })
            while !isInterrupted && failure == nil && (limit == 0 || seen < limit) {
                try c.poll(timeoutMs: 200)
            }
            watch.cancel()
            if let failure { throw failure }
        }
    }
}
