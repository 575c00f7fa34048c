// Thin POSIX file helpers: whole writes, fsync/fdatasync, directory fsync, atomic replace.
//
// Functions throw only StorageError. POSIX calls directly rather than Foundation's FileHandle: we need fdatasync, directory
// fsync and exact control over when bytes reach the disk, which Foundation does not expose.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum FileIO {
    static func fail(_ operation: String, _ path: String) -> StorageError {
        .io(operation: operation, path: path, errno: errno)
    }

    public static func open(_ path: String, flags: Int32, mode: mode_t = 0o644) throws -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            throw fail("open", path)
        }
    }

    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Writes every byte (retrying short writes and EINTR).
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc.write(fd, p, left)
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("write", path)
            }
            p += n
            left -= n
        }
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { (raw) throws in try writeAll(fd, raw, path: path) }
    }

    /// Flushes file data (and the metadata needed to read it back, e.g. the size).
    public static func syncData(_ fd: Int32, path: String) throws {
        #if canImport(Glibc)
        if fdatasync(fd) != 0 { throw fail("fdatasync", path) }
        #else
        if fsync(fd) != 0 { throw fail("fsync", path) }
        #endif
    }

    public static func syncFile(_ fd: Int32, path: String) throws {
        if fsync(fd) != 0 { throw fail("fsync", path) }
    }

    /// Makes a directory's entries (created, renamed, removed files) durable.
    public static func syncDirectory(_ path: String) throws {
        let fd = try open(path, flags: O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        if fsync(fd) != 0 { throw fail("fsync", path) }
    }

    public static func readAll(_ path: String) throws -> [UInt8] {
        let fd = try open(path, flags: O_RDONLY)
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw fail("fstat", path) }
        let size = Int(st.st_size)
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = out.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, size - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("read", path)
            }
            if n == 0 { break }
            done += n
        }
        if done < size { out.removeLast(size - done) }
        return out
    }

    public static func fileExists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    public static func fileSize(_ path: String) -> Int64 {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_size) : 0
    }

    /// Creates the directory and any missing parents; fsyncs each parent that gained an entry.
    public static func createDirectory(_ path: String) throws {
        if fileExists(path) { return }
        let parent = parentDirectory(path)
        if parent != path, !parent.isEmpty { try createDirectory(parent) }
        if mkdir(path, 0o755) != 0, errno != EEXIST { throw fail("mkdir", path) }
        try syncDirectory(parent.isEmpty ? "." : parent)
    }

    public static func parentDirectory(_ path: String) -> String {
        var p = path
        while p.count > 1, p.hasSuffix("/") { p.removeLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        if slash == p.startIndex { return "/" }
        return String(p[..<slash])
    }

    /// Names of the entries in a directory (without "." and "..").
    public static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw fail("opendir", path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    public static func remove(_ path: String) throws {
        if unlink(path) != 0, errno != ENOENT { throw fail("unlink", path) }
    }

    public static func truncate(_ fd: Int32, to size: Int64, path: String) throws {
        if ftruncate(fd, off_t(size)) != 0 { throw fail("ftruncate", path) }
    }

    /// Replaces `path` atomically: writes a temporary file beside it, fsyncs it, renames it
    /// over `path`, then fsyncs the directory so the rename itself survives a crash. Readers
    /// see either the old or the new file, never a mix. `produce` is handed a sink and may
    /// call it many times, so large snapshots stream without one big buffer.
    public static func atomicReplace(
        _ path: String,
        produce: (_ sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        let tmp = path + ".tmp"
        let fd = try open(tmp, flags: O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try produce { (bytes) throws in try writeAll(fd, bytes, path: tmp) }
            try syncFile(fd, path: tmp)
        } catch {
            close(fd)
            try? remove(tmp)
            throw error
        }
        close(fd)
        if rename(tmp, path) != 0 {
            let e = fail("rename", tmp)
            try? remove(tmp)
            throw e
        }
        try syncDirectory(parentDirectory(path))
    }

    public static func atomicReplace(_ path: String, contents: [UInt8]) throws {
        try atomicReplace(path) { (sink) throws in
            try contents.withUnsafeBytes { (raw) throws in try sink(raw) }
        }
    }
}
