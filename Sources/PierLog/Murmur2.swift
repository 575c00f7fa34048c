// Kafka's murmur2 key hash, so keyed records land on the partition a Kafka Java client would pick.

public enum Murmur2 {
    /// murmur2 exactly as Kafka's `Utils.murmur2` computes it (seed 0x9747b28c), as a signed Int32.
    public static func hash(_ data: UnsafeRawBufferPointer) -> Int32 {
        let m: UInt32 = 0x5BD1_E995
        let length = data.count
        var h: UInt32 = 0x9747_B28C ^ UInt32(truncatingIfNeeded: length)
        let length4 = length / 4
        for i in 0..<length4 {
            var k = data.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self).littleEndian
            k = k &* m
            k ^= k >> 24
            k = k &* m
            h = h &* m
            h ^= k
        }
        let tail = length & ~3
        switch length % 4 {
        case 3:
            h ^= UInt32(data[tail + 2]) << 16
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h = h &* m
        case 2:
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h = h &* m
        case 1:
            h ^= UInt32(data[tail])
            h = h &* m
        default:
            break
        }
        h ^= h >> 13
        h = h &* m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }

    public static func hash(_ bytes: [UInt8]) -> Int32 {
        bytes.withUnsafeBytes { hash($0) }
    }

    /// The partition Kafka's default partitioner picks for a key: toPositive(murmur2(key)) % n.
    public static func partition(forKey key: [UInt8], partitions: Int32) -> Int32 {
        precondition(partitions > 0)
        return (hash(key) & 0x7FFF_FFFF) % partitions
    }
}
