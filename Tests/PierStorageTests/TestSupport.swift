// Temporary directories for storage tests.
import Foundation

func makeTemporaryDirectory(_ name: String = #function) -> String {
    let base = FileManager.default.temporaryDirectory.path
    let path = base + "/pier-storage-test-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func removeDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
