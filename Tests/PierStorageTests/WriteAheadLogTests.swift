// WAL: append and reopen, segment rolling, reading from an index, torn-tail truncation, prefix truncation.
import Foundation
import Testing
@testable import PierStorage

@Suite struct WriteAheadLogTests {
    func records(_ wal: WriteAheadLog, from: UInt64 = 0) throws -> [(UInt64, [UInt8])] {
        var out: [(UInt64, [UInt8])] = []
        try wal.forEach(from: from) { out.append(($0, $1)) }
        return out
    }

    @Test func appendSyncReopen() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        do {
            let wal = try WriteAheadLog(directory: dir)
            #expect(wal.isEmpty)
            for i in 1...10 { #expect(try wal.append(bytes("record-\(i)")) == UInt64(i)) }
            try wal.sync()
            wal.close()
        }
        let wal = try WriteAheadLog(directory: dir)
        #expect(wal.firstIndex == 1)
        #expect(wal.lastIndex == 10)
        let all = try records(wal)
        #expect(all.map(\.0) == Array(1...10))
        #expect(all.map(\.1) == (1...10).map { bytes("record-\($0)") })
        #expect(try records(wal, from: 7).map(\.0) == [7, 8, 9, 10])
        #expect(try wal.append(bytes("eleven")) == 11)
    }

    @Test func firstIndexOfNewLog() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let wal = try WriteAheadLog(directory: dir, firstIndex: 42)
        #expect(try wal.append(bytes("x")) == 42)
        try wal.sync()
        #expect(try records(wal).map(\.0) == [42])
    }

    @Test func segmentsRollAndTruncateBefore() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let payload = [UInt8](repeating: 7, count: 100)
        do {
            let wal = try WriteAheadLog(directory: dir, options: .init(segmentBytes: 512))
            for _ in 0..<50 { try wal.append(payload) }
            try wal.sync()
            #expect(wal.segmentCount > 5)
            wal.close()
        }
        let wal = try WriteAheadLog(directory: dir, options: .init(segmentBytes: 512))
        #expect(wal.lastIndex == 50)
        #expect(try records(wal).count == 50)
        try wal.removeSegments(before: 30)
        #expect(wal.firstIndex <= 30)
        #expect(wal.firstIndex > 1)
        let rest = try records(wal, from: 30)
        #expect(rest.map(\.0) == Array(30...50))
        wal.close()
        let again = try WriteAheadLog(directory: dir, options: .init(segmentBytes: 512))
        #expect(again.firstIndex == wal.firstIndex)
        #expect(again.lastIndex == 50)
    }

    func lastSegment(_ dir: String) throws -> String {
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".wal") }.sorted()
        return dir + "/" + names.last!
    }

    @Test func tornTailIsTruncated() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        do {
            let wal = try WriteAheadLog(directory: dir)
            for i in 1...5 { try wal.append(bytes("value-\(i)")) }
            try wal.sync()
            wal.close()
        }
        // A crash mid-write: half of a sixth record's bytes reached the file.
        let path = try lastSegment(dir)
        var frame: [UInt8] = []
        RecordFrame.append(bytes("value-6-which-was-torn"), to: &frame)
        let handle = FileHandle(forWritingAtPath: path)!
        handle.seekToEndOfFile()
        handle.write(Data(frame[0..<(frame.count / 2)]))
        handle.closeFile()
        let sizeBefore = FileIO.fileSize(path)

        let wal = try WriteAheadLog(directory: dir)
        #expect(wal.lastIndex == 5)
        #expect(wal.truncatedBytesAtOpen == Int64(frame.count / 2))
        #expect(FileIO.fileSize(path) == sizeBefore - Int64(frame.count / 2))
        #expect(try wal.append(bytes("value-6")) == 6)
        try wal.sync()
        #expect(try records(wal).map(\.1).last == bytes("value-6"))
    }

    @Test func badCRCTruncatesFromThatRecord() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        do {
            let wal = try WriteAheadLog(directory: dir)
            for i in 1...5 { try wal.append(bytes("value-\(i)")) }
            try wal.sync()
            wal.close()
        }
        // Flip one byte inside record 4's payload.
        let path = try lastSegment(dir)
        var data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let recordSize = RecordFrame.headerSize + bytes("value-1").count
        data[3 * recordSize + RecordFrame.headerSize + 2] ^= 0xFF
        try Data(data).write(to: URL(fileURLWithPath: path))

        let wal = try WriteAheadLog(directory: dir)
        #expect(wal.lastIndex == 3)
        #expect(try records(wal).map(\.1) == (1...3).map { bytes("value-\($0)") })
    }

    @Test func damageBeforeTheTailIsReportedNotTruncated() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        do {
            let wal = try WriteAheadLog(directory: dir, options: .init(segmentBytes: 256))
            for i in 0..<40 { try wal.append(bytes("record-number-\(i)")) }
            try wal.sync()
            wal.close()
        }
        // A flipped byte in the FIRST segment is corruption of acknowledged data, not a torn
        // write: reading must fail loudly instead of silently dropping records.
        let first = dir + "/" + (try FileManager.default.contentsOfDirectory(atPath: dir).sorted().first!)
        var data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: first)))
        data[RecordFrame.headerSize + 3] ^= 0x01
        try Data(data).write(to: URL(fileURLWithPath: first))
        let wal = try WriteAheadLog(directory: dir, options: .init(segmentBytes: 256))
        #expect(wal.lastIndex == 40)
        #expect(throws: StorageError.self) { try wal.forEach(from: 1) { _, _ in } }
    }

    @Test func resetStartsOver() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let wal = try WriteAheadLog(directory: dir)
        for _ in 0..<3 { try wal.append(bytes("a")) }
        try wal.sync()
        try wal.reset(nextIndex: 100)
        #expect(wal.isEmpty)
        #expect(try wal.append(bytes("b")) == 100)
        try wal.sync()
        #expect(try records(wal).map(\.0) == [100])
    }

    @Test func atomicReplace() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/snap"
        try FileIO.atomicReplace(path, contents: bytes("one"))
        #expect(try FileIO.readAll(path) == bytes("one"))
        try FileIO.atomicReplace(path, contents: bytes("two, longer"))
        #expect(try FileIO.readAll(path) == bytes("two, longer"))
        #expect(try FileIO.listDirectory(dir) == ["snap"])
    }
}
