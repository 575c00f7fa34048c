// Topic name rules, the same as Kafka's so names move between the two systems unchanged.

public enum TopicName {
    public static let maxLength = 249

    /// Throws `invalidArgument` explaining what is wrong with `name`.
    public static func validate(_ name: String) throws {
        if name.isEmpty { throw LogError.invalidArgument("topic name is empty") }
        if name == "." || name == ".." { throw LogError.invalidArgument("topic name cannot be \".\" or \"..\"") }
        let utf8 = name.utf8
        if utf8.count > maxLength {
            throw LogError.invalidArgument("topic name is \(utf8.count) characters long; the limit is \(maxLength)")
        }
        for c in utf8 {
            let ok = (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39)
                || c == 0x2E || c == 0x5F || c == 0x2D
            if !ok {
                throw LogError.invalidArgument("topic name \"\(name)\" is illegal: use only ASCII letters, digits, '.', '_' and '-'")
            }
        }
    }
}
