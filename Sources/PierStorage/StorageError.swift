// Errors of the storage layer: I/O failures (with errno), corruption found by checksums, closed or overloaded logs.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A system call failed.
    case io(operation: String, path: String, errno: Int32)
    /// Stored bytes failed their checksum or could not be decoded (not a torn tail).
    case corrupt(String)
    /// The log was closed, or stopped after an earlier I/O failure (fail-stop).
    case closed
    /// Too many appends are waiting for the writer.
    case overloaded

    public var description: String {
        switch self {
        case let .io(operation, path, code):
            return "\(operation) \(path): \(String(cString: strerror(code))) (errno \(code))"
        case let .corrupt(detail):
            return "corrupt data: \(detail)"
        case .closed:
            return "log is closed"
        case .overloaded:
            return "too many pending writes"
        }
    }
}
