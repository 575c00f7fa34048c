// `pier lease grant/revoke/keep-alive/ttl`: leases that expire keys unless renewed.
import ArgumentParser
import Foundation

struct Lease: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease",
        abstract: "Grant, renew, inspect and revoke leases (works against etcd too).",
        subcommands: [LeaseGrant.self, LeaseRevoke.self, LeaseKeepAlive.self, LeaseTTL.self]
    )
}

struct LeaseGrant: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "grant", abstract: "Grant a lease of TTL seconds.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "Time to live in seconds.") var ttl: Int64

    func run() throws {
        try runVerb {
            let c = try client.connect()
            let lease = try c.leaseGrant(ttl: ttl)
            if client.json {
                printJSON(["id": lease.id, "id_hex": leaseIDText(lease.id), "ttl": lease.ttl] as [String: Any])
            } else {
                print("lease \(leaseIDText(lease.id)) granted with TTL \(lease.ttl)s")
            }
        }
    }
}

struct LeaseRevoke: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a lease, deleting its keys.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "Lease id in hex.") var id: String

    func run() throws {
        try runVerb {
            let leaseID = try parseLeaseID(id)
            let c = try client.connect()
            try c.leaseRevoke(leaseID)
            if client.json {
                printJSON(["id": leaseID, "revoked": true] as [String: Any])
            } else {
                print("lease \(leaseIDText(leaseID)) revoked")
            }
        }
    }
}

struct LeaseKeepAlive: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keep-alive", abstract: "Renew a lease until Ctrl-C (or once with --once).")

    @OptionGroup var client: ClientOptions
    @Argument(help: "Lease id in hex.") var id: String

    @Flag(help: "Renew once and exit.")
    var once = false

    func run() throws {
        try runVerb {
            let leaseID = try parseLeaseID(id)
            installInterruptHandler()
            let c = try client.connect()
            repeat {
                let ttl = try c.leaseKeepAliveOnce(leaseID)
                if ttl <= 0 { throw PierError(code: 5, message: "etcdserver: requested lease not found") }
                if client.json {
                    printJSON(["id": leaseID, "ttl": ttl] as [String: Any])
                } else {
                    printLine("lease \(leaseIDText(leaseID)) keepalived with TTL \(ttl)s")
                }
                if once { break }
                // Renew at a third of the TTL, as etcd's clients do, and notice Ctrl-C quickly.
                let deadline = Date().addingTimeInterval(max(Double(ttl) / 3, 0.5))
                while !isInterrupted && Date() < deadline { usleep(100_000) }
            } while !isInterrupted
        }
    }
}

struct LeaseTTL: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ttl", abstract: "Show a lease's remaining time and keys.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "Lease id in hex.") var id: String

    @Flag(help: "List the keys attached to the lease.")
    var keys = false

    func run() throws {
        try runVerb {
            let leaseID = try parseLeaseID(id)
            let c = try client.connect()
            let info = try c.leaseTimeToLive(leaseID, keys: keys)
            if client.json {
                printJSON(["id": info.id, "ttl": info.ttl, "granted_ttl": info.grantedTTL,
                           "keys": info.keys.map { display($0) }] as [String: Any])
            } else if info.ttl < 0 {
                print("lease \(leaseIDText(leaseID)) already expired")
            } else {
                var line = "lease \(leaseIDText(leaseID)) granted with TTL \(info.grantedTTL)s, remaining \(info.ttl)s"
                if keys { line += ", attached keys [\(info.keys.map { display($0) }.joined(separator: " "))]" }
                print(line)
            }
        }
    }
}
