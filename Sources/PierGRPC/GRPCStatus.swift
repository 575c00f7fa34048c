// The outcome of a gRPC call: a status code and a message a person can act on.

/// A gRPC status. Handlers throw it to end a call with that code and message.
public struct GRPCStatus: Error, Sendable, Equatable, CustomStringConvertible {
    /// The canonical gRPC status codes (grpc/doc/statuscodes.md).
    public enum Code: Int, Sendable, Equatable {
        case ok = 0
        case cancelled = 1
        case unknown = 2
        case invalidArgument = 3
        case deadlineExceeded = 4
        case notFound = 5
        case alreadyExists = 6
        case permissionDenied = 7
        case resourceExhausted = 8
        case failedPrecondition = 9
        case aborted = 10
        case outOfRange = 11
        case unimplemented = 12
        case internalError = 13
        case unavailable = 14
        case dataLoss = 15
        case unauthenticated = 16
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String = "") {
        self.code = code
        self.message = message
    }

    public static let ok = GRPCStatus(.ok)

    public var description: String { "\(code) (\(code.rawValue)): \(message)" }
}
