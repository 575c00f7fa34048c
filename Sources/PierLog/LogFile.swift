// A file descriptor with positional I/O; readers share it with the writer, and it closes when dropped.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Immutable after init; pread/pwrite on one descriptor are safe from any thread.
final class LogFile: Sendable {
    let path: String
    let fd: Int32

    init(path: String, create: Bool = true, truncate: Bool = false) throws {
        var flags = O_RDWR | O_CLOEXEC
        if create { flags |= O_CREAT }
        if truncate { flags |= O_TRUNC }
        let fd = open(path, flags, 0o644)
        guard fd >= 0 else { throw LogFile.error("open", path) }
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }

    static func error(_ op: String, _ path: String) -> LogError {
        .storage("\(op) \(path): \(String(cString: strerror(errno)))")
    }

    func size() throws -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw LogFile.error("fstat", path) }
        return Int(st.st_size)
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw LogFile.error("write", path)
            }
            done += n
        }
    }

    func write(_ bytes: [UInt8], at offset: Int) throws {
        try bytes.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws in try write(b, at: offset) }
    }

    /// Reads up to `count` bytes at `offset` into `into`; returns how many were read (short at EOF).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw LogFile.error("read", path)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    func read(count: Int, at offset: Int) throws -> [UInt8] {
        if count <= 0 { return [] }
        var got = 0
        var err: LogError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
            do { got = try read(into: UnsafeMutableRawBufferPointer(buf), at: offset) } catch { err = error as? LogError ?? .storage("\(error)") }
            initialized = got
        }
        if let err { throw err }
        return bytes
    }

    func sync() throws {
        #if canImport(Glibc)
        guard fdatasync(fd) == 0 else { throw LogFile.error("fdatasync", path) }
        #else
        guard fsync(fd) == 0 else { throw LogFile.error("fsync", path) }
        #endif
    }

    func truncate(to size: Int) throws {
        guard ftruncate(fd, off_t(size)) == 0 else { throw LogFile.error("truncate", path) }
    }
}

/// Directory and file-name operations the log needs.
enum LogFS {
    static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw LogFile.error("mkdir", path) }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw LogFile.error("opendir", path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func remove(_ path: String) { unlink(path) }

    static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw LogFile.error("rename", from) }
    }

    /// Removes a directory and the files in it (partition directories hold no subdirectories).
    static func removeTree(_ path: String) {
        if let names = try? list(path) {
            for n in names { unlink(path + "/" + n) }
        }
        rmdir(path)
    }

    /// Makes renames and creations in a directory durable.
    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw LogFile.error("open", path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw LogFile.error("fsync", path) }
    }

    /// Writes `bytes` to `path` atomically: temporary file, fsync, rename, directory fsync.
    static func writeAtomically(_ bytes: [UInt8], to path: String, directory: String) throws {
        let tmp = path + ".tmp"
        let f = try LogFile(path: tmp, create: true, truncate: true)
        try f.write(bytes, at: 0)
        try f.sync()
        try rename(tmp, path)
        try syncDirectory(directory)
    }
}
