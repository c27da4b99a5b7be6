import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An RPM package file as dnf reads it before it installs: the lead, the signature header and
/// the main header's NAME, VERSION, RELEASE, ARCH and file list. Read in Swift because the
/// hosts' `/usr/bin/rpm` is fleetsim's own shim (and the machine need not have rpm at all).
///
/// Only the headers are read: the payload is not unpacked (fleetsim writes its own kernel
/// files), and neither digests nor signatures are checked (rollctl compares the file's SHA-256
/// before it installs; dnf does not check signatures of local files by default). Bounded: a
/// header is read only within its declared size, at most `maxHeaderBytes`; anything that does
/// not add up is `RPMFile.Malformed`, never a crash.
struct RPMPackage: Sendable, Equatable {
    var name: String
    var version: String
    var release: String
    var arch: String
    /// A source package (the lead's type 1): dnf will not install it.
    var isSource: Bool
    /// Every path the package installs, as `rpm -qlp` lists them.
    var files: [String]

    var nvra: String { "\(name)-\(version)-\(release).\(arch)" }

    /// The kernel release kernel-install sees in the package: `<kver>` of `/boot/vmlinuz-<kver>` or
    /// `/lib/modules/<kver>/vmlinuz` (RHEL's kernel-core carries the latter). Nil when it carries
    /// no kernel image, images of two releases, or a release fleetsim would not put in a file name.
    var kernelRelease: String? {
        var found = Set<String>()
        for f in files {
            if f.hasPrefix("/boot/vmlinuz-") {
                found.insert(String(f.dropFirst("/boot/vmlinuz-".count)))
            }
            for dir in ["/lib/modules/", "/usr/lib/modules/"] where f.hasPrefix(dir) && f.hasSuffix("/vmlinuz") {
                let middle = f.dropFirst(dir.count).dropLast("/vmlinuz".count)
                if !middle.isEmpty { found.insert(String(middle)) }
            }
        }
        guard found.count == 1, let k = found.first, !k.hasPrefix("0-rescue-"), Self.isPlainName(k) else { return nil }
        return k
    }

    /// Letters, digits and `. _ + ~ -`, not `.` or `..`: safe as part of a file name.
    static func isPlainName(_ s: String) -> Bool {
        guard !s.isEmpty, s.count <= 200, s != ".", s != ".." else { return false }
        return s.unicodeScalars.allSatisfy { c in
            c.isASCII && (CharacterSet.alphanumerics.contains(c) || "._+~-".unicodeScalars.contains(c))
        }
    }
}

enum RPMFile {
    /// The most bytes one header (index and store) may declare: rpm's own limit is 256 MiB; a
    /// kernel-modules package's header is a few MiB.
    static let maxHeaderBytes = 64 << 20
    /// The most index entries one header may declare (rpm's HEADER_TAGS_MAX).
    static let maxIndexEntries = 0xFFFF
    static let leadSize = 96

    struct Malformed: Error, Equatable, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    enum Tag: UInt32 {
        case name = 1000, version = 1001, release = 1002, arch = 1022
        case oldFilenames = 1027, dirIndexes = 1116, baseNames = 1117, dirNames = 1118
    }

    /// Reads `path`'s lead and headers (and nothing of the payload).
    static func read(path: String) throws -> RPMPackage {
        guard let fh = FileHandle(forReadingAtPath: path) else { throw Malformed("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { try? fh.close() }
        var bytes: [UInt8] = []
        func need(_ n: Int) throws {
            guard bytes.count < n else { return }
            if let more = try fh.read(upToCount: n - bytes.count) { bytes += more }
            guard bytes.count >= n else { throw Malformed("truncated: \(bytes.count) bytes, its headers need \(n)") }
        }
        try need(leadSize + 16)
        guard bytes[0...3] == [0xED, 0xAB, 0xEE, 0xDB] else { throw Malformed("no RPM lead magic") }
        let sig = try headerSize(bytes, at: leadSize)
        let mainAt = leadSize + padded(sig)
        try need(mainAt + 16)
        try need(mainAt + (try headerSize(bytes, at: mainAt)))
        return try parse(bytes)
    }

    /// Parses a package from its first bytes (at least the lead and both headers).
    static func parse(_ bytes: [UInt8]) throws -> RPMPackage {
        guard bytes.count >= leadSize, bytes[0...3] == [0xED, 0xAB, 0xEE, 0xDB] else { throw Malformed("no RPM lead magic") }
        let isSource = be16(bytes, 6) == 1
        let sig = try headerSize(bytes, at: leadSize)
        let mainAt = leadSize + padded(sig)
        let size = try headerSize(bytes, at: mainAt)
        guard bytes.count >= mainAt + size else { throw Malformed("truncated main header") }
        let h = try Header(bytes, at: mainAt)
        func field(_ tag: Tag, _ what: String) throws -> String {
            guard let v = try h.string(tag), RPMPackage.isPlainName(v) else { throw Malformed("\(what) is missing or not a plain name") }
            return v
        }
        let name = try field(.name, "NAME"), version = try field(.version, "VERSION")
        let release = try field(.release, "RELEASE"), arch = try field(.arch, "ARCH")
        var files: [String] = []
        if let base = try h.strings(.baseNames) {
            guard let dirs = try h.strings(.dirNames), let idx = try h.int32s(.dirIndexes), idx.count == base.count else {
                throw Malformed("BASENAMES without matching DIRNAMES and DIRINDEXES")
            }
            for (i, b) in base.enumerated() {
                guard Int(idx[i]) < dirs.count else { throw Malformed("DIRINDEXES names no directory") }
                files.append(dirs[Int(idx[i])] + b)
            }
        } else if let old = try h.strings(.oldFilenames) {
            files = old
        }
        return RPMPackage(name: name, version: version, release: release, arch: arch, isSource: isSource, files: files)
    }

    /// The header at `at`: its magic checked, its declared size (intro, index, store) bounded.
    static func headerSize(_ b: [UInt8], at: Int) throws -> Int {
        guard b.count >= at + 16 else { throw Malformed("truncated header") }
        guard b[at..<at + 4] == [0x8E, 0xAD, 0xE8, 0x01] else { throw Malformed("no header magic at byte \(at)") }
        let count = Int(be32(b, at + 8)), store = Int(be32(b, at + 12))
        guard count <= maxIndexEntries, store <= maxHeaderBytes else { throw Malformed("header declares \(count) entries, \(store) bytes") }
        return 16 + 16 * count + store
    }

    /// The signature header is padded to a multiple of 8 bytes.
    static func padded(_ n: Int) -> Int { (n + 7) / 8 * 8 }

    static func be16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }
    static func be32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    /// One header's index and store; every read is checked against the store's bounds.
    struct Header {
        let store: ArraySlice<UInt8>
        var entries: [UInt32: (type: UInt32, offset: Int, count: Int)] = [:]

        init(_ b: [UInt8], at: Int) throws {
            let count = Int(be32(b, at + 8)), size = Int(be32(b, at + 12))
            let storeAt = at + 16 + 16 * count
            store = b[storeAt..<storeAt + size]
            for i in 0..<count {
                let e = at + 16 + 16 * i
                let tag = be32(b, e)
                guard Tag(rawValue: tag) != nil, entries[tag] == nil else { continue }
                entries[tag] = (be32(b, e + 4), Int(be32(b, e + 8)), Int(be32(b, e + 12)))
            }
        }

        /// `count` NUL-terminated strings from the entry's offset, or nil without the tag.
        func strings(_ tag: Tag, types: Set<UInt32> = [8]) throws -> [String]? {
            guard let e = entries[tag.rawValue] else { return nil }
            guard types.contains(e.type) else { throw Malformed("tag \(tag.rawValue) has type \(e.type)") }
            // Each string takes at least its NUL: a count beyond the store cannot be true.
            guard e.offset < store.count, e.count <= store.count - e.offset else { throw Malformed("tag \(tag.rawValue) runs past its header") }
            var out: [String] = []
            out.reserveCapacity(e.count)
            var i = store.startIndex + e.offset
            for _ in 0..<e.count {
                guard let end = store[i...].firstIndex(of: 0) else { throw Malformed("tag \(tag.rawValue) has an unterminated string") }
                guard let s = String(validating: store[i..<end], as: UTF8.self) else { throw Malformed("tag \(tag.rawValue) is not UTF-8") }
                out.append(s)
                i = end + 1
            }
            return out
        }

        /// A STRING (or the first of an I18NSTRING) entry.
        func string(_ tag: Tag) throws -> String? {
            guard let e = entries[tag.rawValue] else { return nil }
            guard e.count >= 1 else { throw Malformed("tag \(tag.rawValue) is empty") }
            var one = self
            one.entries[tag.rawValue]?.count = 1
            return try one.strings(tag, types: [6, 9])?.first
        }

        /// An INT32 array entry.
        func int32s(_ tag: Tag) throws -> [UInt32]? {
            guard let e = entries[tag.rawValue] else { return nil }
            guard e.type == 4, e.offset <= store.count, e.count <= (store.count - e.offset) / 4 else { throw Malformed("tag \(tag.rawValue) is not an INT32 array within its header") }
            let base = store.startIndex + e.offset
            return (0..<e.count).map { k in
                let i = base + 4 * k
                return UInt32(store[i]) << 24 | UInt32(store[i + 1]) << 16 | UInt32(store[i + 2]) << 8 | UInt32(store[i + 3])
            }
        }
    }
}
