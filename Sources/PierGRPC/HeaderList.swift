// Builds nghttp2 name/value arrays for response headers and trailers.
import CNghttp2

/// Header fields laid out in one contiguous buffer so nghttp2 can copy them in one call.
struct HeaderList {
    private var fields: [(name: [UInt8], value: [UInt8])] = []

    init() {}

    mutating func add(_ name: String, _ value: String) {
        fields.append((Array(name.utf8), Array(value.utf8)))
    }

    /// `grpc-status`, and `grpc-message` (percent-encoded) when there is one.
    mutating func addStatus(_ status: GRPCStatus) {
        add("grpc-status", String(status.code.rawValue))
        if !status.message.isEmpty { add("grpc-message", PercentEncoding.encode(status.message)) }
    }

    /// Calls `body` with an nghttp2_nv array valid only for the duration of the call
    /// (nghttp2 copies header fields when a frame is submitted).
    func withNV<R>(_ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
        var storage = [UInt8]()
        storage.reserveCapacity(fields.reduce(0) { $0 + $1.name.count + $1.value.count })
        var offsets: [(Int, Int, Int, Int)] = []
        for field in fields {
            let nameStart = storage.count
            storage += field.name
            let valueStart = storage.count
            storage += field.value
            offsets.append((nameStart, field.name.count, valueStart, field.value.count))
        }
        return storage.withUnsafeMutableBufferPointer { bytes in
            let base = bytes.baseAddress ?? UnsafeMutablePointer<UInt8>.allocate(capacity: 0)
            var nva = offsets.map { nameStart, nameLength, valueStart, valueLength in
                nghttp2_nv(name: base + nameStart, value: base + valueStart,
                           namelen: nameLength, valuelen: valueLength,
                           flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return nva.withUnsafeMutableBufferPointer { nv in
                body(UnsafePointer(nv.baseAddress!), nv.count)
            }
        }
    }
}

/// A header block built once and kept for the life of the process: nghttp2 may reference it
/// without copying (NO_COPY flags), which saves two allocations per call on the hot path.
final class StaticHeaderBlock: Sendable {
    // Allocated once in init, never mutated or freed afterwards.
    nonisolated(unsafe) let nv: UnsafeMutablePointer<nghttp2_nv>
    let count: Int

    init(_ fields: [(String, String)]) {
        count = fields.count
        nv = .allocate(capacity: fields.count)
        for (index, (name, value)) in fields.enumerated() {
            let nameBytes = Array(name.utf8), valueBytes = Array(value.utf8)
            let namePointer = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, nameBytes.count))
            namePointer.initialize(from: nameBytes, count: nameBytes.count)
            let valuePointer = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, valueBytes.count))
            valuePointer.initialize(from: valueBytes, count: valueBytes.count)
            let flags = NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue
            (nv + index).initialize(to: nghttp2_nv(name: namePointer, value: valuePointer,
                                                  namelen: nameBytes.count, valuelen: valueBytes.count,
                                                  flags: UInt8(flags)))
        }
    }
}
