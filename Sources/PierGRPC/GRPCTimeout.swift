// Parses the `grpc-timeout` header: up to 8 digits followed by a unit (H M S m u n).

enum GRPCTimeout {
    /// The timeout in nanoseconds, or nil when the value is malformed.
    static func parse(_ value: String) -> Int64? {
        let utf8 = Array(value.utf8)
        guard utf8.count >= 2, utf8.count <= 9, let unit = utf8.last else { return nil }
        var amount: Int64 = 0
        for digit in utf8.dropLast() {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            amount = amount * 10 + Int64(digit - UInt8(ascii: "0"))
        }
        let nanosPerUnit: Int64
        switch unit {
        case UInt8(ascii: "H"): nanosPerUnit = 3_600_000_000_000
        case UInt8(ascii: "M"): nanosPerUnit = 60_000_000_000
        case UInt8(ascii: "S"): nanosPerUnit = 1_000_000_000
        case UInt8(ascii: "m"): nanosPerUnit = 1_000_000
        case UInt8(ascii: "u"): nanosPerUnit = 1_000
        case UInt8(ascii: "n"): nanosPerUnit = 1
        default: return nil
        }
        // 8 digits of hours overflow Int64 nanoseconds; such a deadline is "never" in practice.
        let (product, overflow) = amount.multipliedReportingOverflow(by: nanosPerUnit)
        return overflow ? Int64.max : product
    }
}
