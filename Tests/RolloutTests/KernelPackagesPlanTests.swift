import Foundation
import Testing
@testable import Basics
@testable import RolloutConfig
@testable import Engine

/// `kernel.packages`, `kernel.upload_parallel`, `kernel.upload_bandwidth`: the plan keys, their
/// errors at file:line:col, and the commands rendered from them.
@Suite struct KernelPackagesPlanTests {
    /// A folder with a plan file's neighbours: a real-looking .deb (ar magic), an .rpm (lead magic).
    final class Folder {
        let dir: String
        init() throws {
            dir = NSTemporaryDirectory() + "rollctl-pkgplan-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: dir + "/pkgs", withIntermediateDirectories: true)
            try Data("!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n".utf8)
                .write(to: URL(fileURLWithPath: dir + "/pkgs/linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb"))
            try Data("!<arch>\nmore".utf8).write(to: URL(fileURLWithPath: dir + "/pkgs/linux-modules-6.1.0-19-hosting_6.1.76-1_amd64.deb"))
            try Data([0xED, 0xAB, 0xEE, 0xDB, 3, 0]).write(to: URL(fileURLWithPath: dir + "/kernel-6.1.0-19.el9.x86_64.rpm"))
            try Data("this is a text file\n".utf8).write(to: URL(fileURLWithPath: dir + "/fake.deb"))
            try Data().write(to: URL(fileURLWithPath: dir + "/empty.deb"))
            try FileManager.default.createDirectory(atPath: dir + "/folder.deb", withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: dir) }

        /// Loads a plan whose `kernel:` mapping is `kernel` (indented under it).
        func load(_ kernel: String) throws -> Plan {
            let text = "name: p\nkernel:\n  release: 6.1.0-19-hosting\n" + kernel + "inventory: inv.yaml\n"
            try text.write(toFile: dir + "/plan.yaml", atomically: true, encoding: .utf8)
            return try PlanLoader.load(path: dir + "/plan.yaml")
        }

        func errors(_ kernel: String) -> [InputError] {
            do { _ = try load(kernel); return [] } catch let e as InputErrors { return e.errors } catch { return [] }
        }
    }

    @Test func packagesLoadRelativeToThePlanWithTheirSizesAndKinds() throws {
        let f = try Folder()
        let p = try f.load("  packages:\n    - pkgs/linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb\n    - ./pkgs/linux-modules-6.1.0-19-hosting_6.1.76-1_amd64.deb\n  upload_parallel: 3\n  upload_bandwidth: 20MiB/s\n")
        #expect(p.kernel.packages.map(\.name) == ["linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb", "linux-modules-6.1.0-19-hosting_6.1.76-1_amd64.deb"])
        #expect(p.kernel.packages.map(\.path) == [f.dir + "/pkgs/linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb", f.dir + "/pkgs/linux-modules-6.1.0-19-hosting_6.1.76-1_amd64.deb"])
        #expect(p.kernel.packages.allSatisfy { $0.kind == .deb })
        #expect(p.kernel.packages[1].size == UInt64("!<arch>\nmore".utf8.count))
        #expect(p.kernel.uploadParallel == 3)
        #expect(p.kernel.uploadBandwidth == 20 << 20)
        let rpm = try f.load("  packages: [kernel-6.1.0-19.el9.x86_64.rpm]\n")
        #expect(rpm.kernel.packages.first?.kind == .rpm)
        #expect(rpm.kernel.uploadParallel == 8 && rpm.kernel.uploadBandwidth == nil)
        #expect(try f.load("").kernel.packages.isEmpty)
    }

    @Test func badPackagesAreErrorsAtTheirLineAndColumn() throws {
        let f = try Folder()
        func one(_ kernel: String, _ expected: String, line: Int, column: Int, sourceLocation: SourceLocation = #_sourceLocation) {
            let e = f.errors(kernel)
            #expect(e.count == 1, "\(e)", sourceLocation: sourceLocation)
            guard let first = e.first else { return }
            #expect(first.message.contains(expected), "\(first.message)", sourceLocation: sourceLocation)
            #expect(first.file == f.dir + "/plan.yaml" && first.line == line && first.column == column, "\(first)", sourceLocation: sourceLocation)
        }
        one("  packages: [pkgs/missing.deb]\n", "cannot be found", line: 4, column: 14)
        one("  packages:\n    - fake.deb\n", "is named .deb but is not a Debian package", line: 5, column: 7)
        one("  packages: [empty.deb]\n", "(it is empty)", line: 4, column: 14)
        one("  packages: [folder.deb]\n", "not a regular file", line: 4, column: 14)
        one("  packages: [plan.yaml]\n", "not a .deb or .rpm", line: 4, column: 14)
        one("  packages: [pkgs/linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb, kernel-6.1.0-19.el9.x86_64.rpm]\n", "mixes .deb and .rpm", line: 4, column: 68)
        one("  packages: [pkgs/linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb, ./pkgs/../pkgs/linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb]\n",
            "two files called", line: 4, column: 68)
        one("  packages: []\n", "empty list", line: 4, column: 13)
        one("  packages: pkgs/linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb\n", "must be a list", line: 4, column: 13)
        one("  install: apt-get install -y linux-image-{release}\n  packages: [pkgs/linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb]\n",
            "kernel.install and kernel.packages exclude each other", line: 4, column: 3)
        one("  upload_parallel: 4\n", "only for kernel.packages", line: 4, column: 3)
        one("  packages: [pkgs/linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb]\n  upload_parallel: 0\n", "upload_parallel", line: 5, column: 20)
        one("  packages: [pkgs/linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb]\n  upload_bandwidth: 1KiB/s\n", "too low", line: 5, column: 21)
        one("  packages: [pkgs/linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb]\n  upload_bandwidth: fast\n", "must be a rate", line: 5, column: 21)
        one("  packagez: [x.deb]\n", "unknown key 'packagez'", line: 4, column: 3)
        #expect(f.errors("  packagez: [x.deb]\n").first?.hint == "did you mean 'packages'?")
    }

    /// A rollout's plan read back from the journal (resume, abort, rollback) does not need the
    /// files: a rollout whose packages were deleted can still be rolled back.
    @Test func theJournalsCopyOfAPlanLoadsWithoutItsFiles() throws {
        let text = "name: p\nkernel:\n  release: 6.1.0-19-hosting\n  packages: [gone/linux-image-6.1.0-19-hosting_amd64.deb]\ninventory: inv.yaml\n"
        #expect(throws: InputErrors.self) { try PlanLoader.parse(text: text, path: "/srv/plans/p.yaml") }
        let p = try PlanLoader.parse(text: text, path: "/srv/plans/p.yaml", checkFiles: false)
        #expect(p.kernel.packages == [KernelPackage(path: "/srv/plans/gone/linux-image-6.1.0-19-hosting_amd64.deb", name: "linux-image-6.1.0-19-hosting_amd64.deb", kind: .deb, size: 0)])
        // The rules that need no file still hold.
        #expect(throws: InputErrors.self) { try PlanLoader.parse(text: text.replacingOccurrences(of: "_amd64.deb", with: "_amd64.zip"), path: "/srv/plans/p.yaml", checkFiles: false) }
    }

    @Test func hostileFileNamesAreRefusedBeforeAnyFileIsRead() throws {
        let f = try Folder()
        for bad in ["\"'a;reboot'.deb\"", "\"$(reboot).deb\"", "\"-rf.deb\"", "\"a b.deb\"", "\"a\\nb.deb\""] {
            let e = f.errors("  packages: [\(bad)]\n")
            #expect(e.count == 1 && e[0].message.contains("characters a package file name should not have"), "\(bad): \(e)")
        }
    }

    @Test func everyValueInTheRemoteCommandsIsQuoted() {
        let dir = PackageCommands.directory(rollout: "r20261206-061500-ab12")
        #expect(dir == "/var/tmp/rollctl-r20261206-061500-ab12")
        let p = ShippedPackage(name: "linux-image-6.1.0-19-hosting_6.1.76-1+b1~x_amd64.deb", path: "/x", kind: "deb", size: 1, sha256: String(repeating: "a", count: 64))
        #expect(PackageCommands.install(directory: dir, packages: [p]) == "DEBIAN_FRONTEND=noninteractive dpkg -i '/var/tmp/rollctl-r20261206-061500-ab12/linux-image-6.1.0-19-hosting_6.1.76-1+b1~x_amd64.deb'")
        var rpm = p
        rpm.kind = "rpm"
        rpm.name = "kernel-6.1.rpm"
        #expect(PackageCommands.install(directory: dir, packages: [rpm]) == "dnf install -y /var/tmp/rollctl-r20261206-061500-ab12/kernel-6.1.rpm")
        #expect(PackageCommands.prepare(directory: dir, names: ["it's.deb"]).contains("for f in 'it'\\''s.deb'; do"))
        #expect(PackageCommands.remove(directory: "/var/tmp/a b") == "rm -rf -- '/var/tmp/a b'")
    }

    /// Whatever a host prints, only wanted names with 64 lowercase hex digits come back.
    @Test func anyOutputGivesOnlyWellFormedSumsOfWantedNames() {
        var rng = SystemRandomNumberGenerator()
        let names = ["a.deb", "a.deb.part", "b.deb"]
        let pieces = ["a.deb", "b.deb", "  ", " *", "\n", "\r", "\u{0}", "\u{1B}[2J", "0123456789abcdef", "ABCDEF", "g", "é", "a.deb.part", "/var/tmp/"]
        for _ in 0..<2000 {
            let text = (0..<Int.random(in: 0...40, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
            for (name, hex) in PackageCommands.parseSums(text, names: names) {
                #expect(names.contains(name))
                #expect(hex.utf8.count == 64 && hex.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }, "\(text.debugDescription)")
            }
        }
    }

    @Test func checksumsFromTheHostAreReadWarily() {
        let good = String(repeating: "0123456789abcdef", count: 4)
        let names = ["a.deb", "b.deb"]
        let out = "\(good)  a.deb\n\(good.uppercased())  b.deb\n\(good)  c.deb\n\(good)  b.deb.part\n\u{1B}[2J\(good)  b.deb\n" + String(repeating: "x", count: 70_000) + "\n\(good)  b.deb\n"
        #expect(PackageCommands.parseSums(out, names: names) == ["a.deb": good])
        #expect(PackageCommands.hexPrefix("\(good)  /var/tmp/x.part") == good)
        #expect(PackageCommands.hexPrefix(String(good.dropLast()) + "g  x") == nil)
        #expect(PackageCommands.hexPrefix("sha256sum: x: No such file or directory") == nil)
    }
}
