import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import FleetsimCore

/// fleetsim's reader of RPM headers (what its dnf and `rpm -qp` know of a package file): against
/// the real rpm's answers for a package the real rpmbuild made, and against hostile bytes.
struct RPMFileTests {
    /// A header: magic, index, store (strings NUL-terminated, INT32s big-endian).
    static func header(_ entries: [(tag: UInt32, value: Value)]) -> [UInt8] {
        var index: [UInt8] = [], store: [UInt8] = []
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        for (tag, value) in entries {
            let (type, count, data): (UInt32, Int, [UInt8]) = switch value {
            case .string(let s): (6, 1, Array(s.utf8) + [0])
            case .strings(let a): (8, a.count, a.flatMap { Array($0.utf8) + [0] })
            case .int32s(let a): (4, a.count, a.flatMap { be($0) })
            }
            while type == 4 && store.count % 4 != 0 { store.append(0) }
            index += be(tag) + be(type) + be(UInt32(store.count)) + be(UInt32(count))
            store += data
        }
        return [0x8E, 0xAD, 0xE8, 0x01, 0, 0, 0, 0] + be(UInt32(entries.count)) + be(UInt32(store.count)) + index + store
    }

    enum Value { case string(String), strings([String]), int32s([UInt32]) }

    /// A package file's first bytes: lead, an empty signature header padded to 8, the main header.
    static func package(_ main: [(tag: UInt32, value: Value)], source: Bool = false) -> [UInt8] {
        var lead = [UInt8](repeating: 0, count: 96)
        lead[0...7] = [0xED, 0xAB, 0xEE, 0xDB, 3, 0, 0, source ? 1 : 0]
        var sig = header([(1000, .int32s([42]))])
        while sig.count % 8 != 0 { sig.append(0) }
        return lead + sig + header(main)
    }

    static let kernelCore: [(tag: UInt32, value: Value)] = [
        (1000, .string("kernel-core")), (1001, .string("6.1.0")), (1002, .string("21.hosting")), (1022, .string("x86_64")),
        (1116, .int32s([0, 1, 1])), (1117, .strings(["vmlinuz-6.1.0-21.hosting.x86_64", "vmlinuz", "modules.order"])),
        (1118, .strings(["/boot/", "/lib/modules/6.1.0-21.hosting.x86_64/"])),
    ]

    @Test func readsNameVersionReleaseArchAndTheKernelReleaseFromTheFileList() throws {
        let p = try RPMFile.parse(Self.package(Self.kernelCore))
        #expect(p.nvra == "kernel-core-6.1.0-21.hosting.x86_64")
        #expect(p.files == ["/boot/vmlinuz-6.1.0-21.hosting.x86_64", "/lib/modules/6.1.0-21.hosting.x86_64/vmlinuz",
                            "/lib/modules/6.1.0-21.hosting.x86_64/modules.order"])
        #expect(p.kernelRelease == "6.1.0-21.hosting.x86_64" && !p.isSource)
        // RHEL's kernel-core: only /lib/modules/<kver>/vmlinuz (kernel-install copies it to /boot).
        var modulesOnly = Self.kernelCore
        modulesOnly[4] = (1116, .int32s([0]))
        modulesOnly[5] = (1117, .strings(["vmlinuz"]))
        modulesOnly[6] = (1118, .strings(["/lib/modules/5.14.0-427.el9.x86_64/"]))
        #expect(try RPMFile.parse(Self.package(modulesOnly)).kernelRelease == "5.14.0-427.el9.x86_64")
        // No kernel image, images of two releases, or a release that is no plain name: not a kernel.
        for (dirs, bases) in [(["/usr/bin/"], ["hello"]), (["/boot/"], ["vmlinuz-6.1.0-1", "vmlinuz-6.1.0-2"]), (["/boot/"], ["vmlinuz-a b"]),
                              (["/lib/modules/../"], ["vmlinuz"])] {
            var m = Self.kernelCore
            m[4] = (1116, .int32s(bases.map { _ in 0 }))
            m[5] = (1117, .strings(bases))
            m[6] = (1118, .strings(dirs))
            #expect(try RPMFile.parse(Self.package(m)).kernelRelease == nil, "\(dirs) \(bases)")
        }
        #expect(try RPMFile.parse(Self.package(Self.kernelCore, source: true)).isSource)
    }

    /// The real rpmbuild's package, read here and by the real rpm (outside any fleetsim host, so
    /// /usr/bin/rpm is Debian's): the same NVRA and file list. Debian's `rpm` package (`make deps`).
    @Test func agreesWithTheRealRPMOnARealPackage() throws {
        let top = NSTemporaryDirectory() + "rpmfile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: top) }
        try FileManager.default.createDirectory(atPath: top + "/SOURCES", withIntermediateDirectories: true)
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: top + "/SOURCES/vmlinuz"))
        try """
        Name: kernel-core
        Version: 6.1.0
        Release: 21.hosting
        Summary: test
        License: GPL-2.0-only
        BuildArch: x86_64
        %define debug_package %{nil}
        %define _build_id_links none
        %description
        test
        %install
        mkdir -p %{buildroot}/boot %{buildroot}/lib/modules/6.1.0-21.hosting.x86_64
        cp %{_sourcedir}/vmlinuz %{buildroot}/boot/vmlinuz-6.1.0-21.hosting.x86_64
        cp %{_sourcedir}/vmlinuz %{buildroot}/lib/modules/6.1.0-21.hosting.x86_64/vmlinuz
        %files
        /boot/vmlinuz-6.1.0-21.hosting.x86_64
        /lib/modules/6.1.0-21.hosting.x86_64

        """.write(toFile: top + "/k.spec", atomically: true, encoding: .utf8)
        #expect(FileManager.default.isExecutableFile(atPath: "/usr/bin/rpmbuild"), "Debian's rpm package is not installed (make deps)")
        let built = runCapturing("/usr/bin/rpmbuild", ["-bb", "--quiet", "--define", "_topdir \(top)", top + "/k.spec"])
        #expect(built.status == 0, "\(built)")
        let file = top + "/RPMS/x86_64/kernel-core-6.1.0-21.hosting.x86_64.rpm"
        let p = try RPMFile.read(path: file)
        #expect(p.nvra == runCapturing("/usr/bin/rpm", ["-qp", file]).stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(p.files == runCapturing("/usr/bin/rpm", ["-qpl", file]).stdout.split(separator: "\n").map(String.init))
        #expect(p.kernelRelease == "6.1.0-21.hosting.x86_64")
        // Everything past the headers (the payload) is never read: the file cut after them still reads.
        let whole = try Array(Data(contentsOf: URL(fileURLWithPath: file)))
        let sig = try RPMFile.headerSize(whole, at: 96)
        let end = 96 + RPMFile.padded(sig) + (try RPMFile.headerSize(whole, at: 96 + RPMFile.padded(sig)))
        #expect(try RPMFile.parse(Array(whole[..<end])) == p)
        #expect(throws: RPMFile.Malformed.self) { try RPMFile.parse(Array(whole[..<(end - 1)])) }
    }

    /// Hostile bytes: every truncation, random corruption, and counts and offsets that lie are
    /// refused (`Malformed`), never a crash or a read past the header.
    @Test func hostileFilesAreRefusedNeverACrash() throws {
        let good = Self.package(Self.kernelCore)
        for n in 0..<good.count {
            #expect(throws: RPMFile.Malformed.self) { try RPMFile.parse(Array(good[..<n])) }
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            var b = good
            for _ in 0..<Int.random(in: 1...4, using: &rng) { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            _ = try? RPMFile.parse(b)
        }
        // Declared sizes beyond the limits or the file; an index into no directory; a string count past the store.
        let mainAt = 96 + RPMFile.padded(try RPMFile.headerSize(good, at: 96))
        for (at, value) in [(mainAt + 8, UInt32.max), (mainAt + 12, UInt32.max), (mainAt + 12, 1 << 20), (96 + 8, 0x10000)] {
            var b = good
            b[at..<at + 4] = [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
            #expect(throws: RPMFile.Malformed.self) { try RPMFile.parse(b) }
        }
        var badIndex = Self.kernelCore
        badIndex[4] = (1116, .int32s([0, 1, 7]))
        #expect(throws: RPMFile.Malformed.self) { try RPMFile.parse(Self.package(badIndex)) }
        var tooMany = Self.kernelCore
        tooMany[4] = (1116, .int32s([0, 1]))
        #expect(throws: RPMFile.Malformed.self) { try RPMFile.parse(Self.package(tooMany)) }
        var noName = Self.kernelCore
        noName[0] = (1000, .string("kernel core"))
        #expect(throws: RPMFile.Malformed.self) { try RPMFile.parse(Self.package(noName)) }
        #expect(throws: RPMFile.Malformed.self) { try RPMFile.read(path: "/dev/null") }
        #expect(throws: RPMFile.Malformed.self) { try RPMFile.read(path: "/nonexistent/x.rpm") }
    }
}
