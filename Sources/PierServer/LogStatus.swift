// Maps the log engine's errors to the gRPC statuses clients of pier.log.v1.Log see.
import PierGRPC
import PierLog

extension LogError {
    /// The engine names the gRPC code it means (numerically gRPC's); one exception: a batch over
    /// max.message.bytes is RESOURCE_EXHAUSTED, the code gRPC clients already use for "message
    /// too large", so a client handles both limits the same way.
    var grpcStatus: GRPCStatus {
        if case .recordTooLarge = self { return GRPCStatus(.resourceExhausted, message) }
        return GRPCStatus(GRPCStatus.Code(rawValue: code.rawValue) ?? .internalError, message)
    }
}

/// Turns anything a log handler throws into the status the call ends with.
func logStatus(_ error: any Error) -> GRPCStatus {
    if let status = error as? GRPCStatus { return status }
    if let logError = error as? LogError { return logError.grpcStatus }
    if error is CancellationError { return GRPCStatus(.cancelled, "call cancelled") }
    return GRPCStatus(.internalError, "\(error)")
}

/// Throws INVALID_ARGUMENT with `message` unless `condition` holds.
func logRequire(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw GRPCStatus(.invalidArgument, message()) }
}
