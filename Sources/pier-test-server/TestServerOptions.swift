// Command-line options of pier-test-server (a handful of flags: plain parsing is enough).
import Logging
import PierGRPC

struct TestServerOptions {
    var configuration = GRPCServerConfiguration()
    var logLevel: Logger.Level = .warning

    static let usage = """
        usage: pier-test-server [--listen HOST:PORT] [--max-message-bytes N] [--max-connections N]
                                [--max-concurrent-streams N] [--shutdown-grace SECONDS] [--log-level LEVEL]
          --listen HOST:PORT   address to bind (default 127.0.0.1:0; port 0 picks a free port)
        """

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func parse(_ arguments: [String]) throws -> TestServerOptions {
        var options = TestServerOptions()
        options.configuration.host = "127.0.0.1"
        options.configuration.port = 0
        var rest = arguments[...]
        func value(_ flag: String) throws -> String {
            guard let value = rest.popFirst() else { throw Failure(description: "\(flag) needs a value") }
            return value
        }
        func integer(_ flag: String) throws -> Int {
            let text = try value(flag)
            guard let number = Int(text), number >= 0 else {
                throw Failure(description: "\(flag): '\(text)' is not a non-negative integer")
            }
            return number
        }
        while let flag = rest.popFirst() {
            switch flag {
            case "--listen":
                let address = try value(flag)
                guard let colon = address.lastIndex(of: ":"),
                      let port = Int(address[address.index(after: colon)...]), (0...65535).contains(port) else {
                    throw Failure(description: "--listen: expected HOST:PORT, got '\(address)'")
                }
                var host = String(address[..<colon])
                if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
                options.configuration.host = host
                options.configuration.port = port
            case "--max-message-bytes":
                options.configuration.maxReceiveMessageBytes = try integer(flag)
            case "--max-connections":
                options.configuration.maxConnections = try integer(flag)
            case "--max-concurrent-streams":
                options.configuration.maxConcurrentStreams = UInt32(clamping: try integer(flag))
            case "--shutdown-grace":
                let text = try value(flag)
                guard let seconds = Double(text), seconds >= 0 else {
                    throw Failure(description: "--shutdown-grace: '\(text)' is not a number of seconds")
                }
                options.configuration.shutdownGraceSeconds = seconds
            case "--log-level":
                let text = try value(flag)
                guard let level = Logger.Level(rawValue: text) else {
                    throw Failure(description: "--log-level: '\(text)' is not one of trace, debug, info, notice, warning, error, critical")
                }
                options.logLevel = level
            case "-h", "--help":
                throw Failure(description: "help")
            default:
                throw Failure(description: "unknown option '\(flag)'")
            }
        }
        return options
    }
}
