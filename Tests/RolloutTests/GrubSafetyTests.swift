import Foundation
import Testing
@testable import Engine

/// `GrubSafety`: what the grub driver's pre-check reads (GRUB_DEFAULT, grub-probe, grubenv) and
/// what it makes of it; every byte of the output is the host's, so hostile bytes too.
@Suite struct GrubSafetyTests {
    static func section(_ body: String) -> String { "@@rollctl-file grub-safety\n" + body + "end\n" }
    static let plain = "defaults ok\nset GRUB_DEFAULT=saved\nprobe abstraction ok\nabstraction \nprobe fs ok\nfs ext2\nenv ok\n"

    func findings(_ body: String) throws -> [BootloaderFinding] { try #require(GrubSafety.parse(Self.section(body))).findings }
    func errors(_ body: String) throws -> [String] { try findings(body).filter { $0.severity == .error }.map(\.message) }

    @Test func aPlainDebianHostHasNoFindings() throws {
        let g = try #require(GrubSafety.parse("noise\n" + Self.section(Self.plain)))
        #expect(g.grubDefault == "saved" && g.abstraction == [] && g.fs == "ext2" && g.recordfail == nil)
        #expect(g.findings.isEmpty)
        // The driver reads the same.
        #expect(GrubDriver().preflightFindings(Self.section(Self.plain)).isEmpty)
    }

    @Test func grubDefaultAsTheShellReadsIt() throws {
        for line in ["GRUB_DEFAULT=\"saved\"", "GRUB_DEFAULT='saved'", "  export GRUB_DEFAULT=saved # the saved one", "GRUB_DEFAULT=0\nset GRUB_DEFAULT=saved"] {
            #expect(try errors(Self.plain.replacingOccurrences(of: "GRUB_DEFAULT=saved", with: line)).isEmpty, "\(line)")
        }
        // The last assignment wins (grub.d after /etc/default/grub).
        let e = try errors(Self.plain.replacingOccurrences(of: "set GRUB_DEFAULT=saved", with: "set GRUB_DEFAULT=saved\nset GRUB_DEFAULT=\"1>2\""))
        #expect(e == ["/etc/default/grub sets GRUB_DEFAULT=1>2, not saved: grub-set-default would not make the new kernel the default, and a kernel that fails to boot would not fall back to the current one; set GRUB_DEFAULT=saved in /etc/default/grub and run update-grub"])
        #expect(try errors(Self.plain.replacingOccurrences(of: "set GRUB_DEFAULT=saved\n", with: "")).first?.hasPrefix("/etc/default/grub does not set GRUB_DEFAULT (GRUB then boots entry 0") == true)
        #expect(try errors(Self.plain.replacingOccurrences(of: "defaults ok\nset GRUB_DEFAULT=saved\n", with: "defaults missing\n")).first?.hasPrefix("/etc/default/grub does not exist") == true)
        #expect(try errors(Self.plain.replacingOccurrences(of: "defaults ok\nset GRUB_DEFAULT=saved\n", with: "defaults unreadable\n")).first?.hasPrefix("cannot read /etc/default/grub") == true)
    }

    @Test(arguments: [("abstraction lvm", "/boot/grub is on lvm (grub-probe --target=abstraction)"),
                      ("abstraction diskfilter mdraid1x", "/boot/grub is on diskfilter mdraid1x (grub-probe --target=abstraction)"),
                      ("abstraction cryptodisk luks2", "/boot/grub is on cryptodisk luks2"),
                      ("fs btrfs", "/boot/grub is on btrfs (grub-probe --target=fs)"),
                      ("fs zfs", "/boot/grub is on zfs")])
    func bootOnAnAbstractionOrFileSystemGrubCannotWriteFails(line: String, message: String) throws {
        let body = line.hasPrefix("fs") ? Self.plain.replacingOccurrences(of: "fs ext2", with: line)
            : Self.plain.replacingOccurrences(of: "abstraction \n", with: line + "\n")
        let e = try errors(body)
        #expect(e.count == 1 && e[0].hasPrefix(message) && e[0].contains("GRUB cannot write grubenv at boot, so boot-once cannot fall back")
                && e[0].hasSuffix("use bootloader: custom, or move /boot to a plain partition"), "\(e)")
    }

    @Test func aGrubProbeThatFailsFailsTheCheck() throws {
        let e = try errors(Self.plain.replacingOccurrences(of: "probe abstraction ok\nabstraction \n", with: "probe abstraction error\nabstraction grub-probe: error: failed to get canonical path of `overlay'.\n"))
        #expect(e == ["grub-probe --target=abstraction /boot/grub failed (grub-probe: error: failed to get canonical path of `overlay'.): cannot tell whether GRUB can write grubenv at boot; use bootloader: custom, or move /boot to a plain partition"])
        // Not run at all (the section ends before it): fails too.
        #expect(try errors("defaults ok\nset GRUB_DEFAULT=saved\n").count == 2)
    }

    @Test func recordfailIsAWarningWithItsWaitAndAnErrorWhenItWaitsForever() throws {
        let rf = Self.plain + "env recordfail=1\n"
        let w = try findings(rf)
        #expect(w.count == 1 && w[0].severity == .warning && w[0].message.contains("wait 30 s (GRUB_RECORDFAIL_TIMEOUT)"), "\(w)")
        let w5 = try findings(rf.replacingOccurrences(of: "set GRUB_DEFAULT=saved\n", with: "set GRUB_DEFAULT=saved\nset GRUB_RECORDFAIL_TIMEOUT=5\n"))
        #expect(w5.count == 1 && w5[0].severity == .warning && w5[0].message.contains("wait 5 s"), "\(w5)")
        #expect(try findings(rf.replacingOccurrences(of: "set GRUB_DEFAULT=saved\n", with: "set GRUB_DEFAULT=saved\nset GRUB_RECORDFAIL_TIMEOUT=0\n")).isEmpty)
        let forever = Self.plain.replacingOccurrences(of: "set GRUB_DEFAULT=saved\n", with: "set GRUB_DEFAULT=saved\nset GRUB_RECORDFAIL_TIMEOUT=-1\n")
        let e = try errors(forever + "env recordfail=1\n")
        #expect(e.count == 1 && e[0].hasPrefix("grubenv has recordfail=1 (a boot that did not finish) and GRUB_RECORDFAIL_TIMEOUT=-1: GRUB would wait at its menu forever"), "\(e)")
        // -1 without recordfail now: a warning of what a failed boot would do.
        let w1 = try findings(forever)
        #expect(w1.count == 1 && w1[0].severity == .warning && w1[0].message.hasPrefix("GRUB_RECORDFAIL_TIMEOUT=-1: should a boot not finish"), "\(w1)")
        #expect(try findings(Self.plain + "env recordfail=0\n").isEmpty)
        // grubenv unreadable: a warning, not a failure.
        let u = try findings(Self.plain.replacingOccurrences(of: "env ok\n", with: "env error\nenv grub-editenv: error: cannot open `/boot/grub/grubenv'.\n"))
        #expect(u.count == 1 && u[0].severity == .warning && u[0].message.hasPrefix("cannot read grubenv"), "\(u)")
    }

    /// The command itself, in a real shell on this machine (no grub-probe, no grubenv here): it
    /// runs to its `end`, quietly and briefly, and what it printed parses (grub-probe's failure reported).
    /// RHEL's layout (the command prints `layout grub2` on a host with /boot/grub2 and no
    /// /boot/grub/grub.cfg): the same checks, its paths and tools named; grub-bls runs them too.
    @Test func rhelsLayoutIsCheckedTheSameAndNamedItsWay() throws {
        let rhel = "layout grub2\n" + Self.plain
        let g = try #require(GrubSafety.parse(Self.section(rhel)))
        #expect(g.layout == .grub2 && g.findings.isEmpty)
        #expect(GrubBLSDriver().preflight == GrubSafety.command)
        #expect(GrubBLSDriver().preflightFindings(Self.section(rhel)).isEmpty)
        let lvm = GrubBLSDriver().preflightFindings(Self.section(rhel.replacingOccurrences(of: "abstraction \n", with: "abstraction lvm\n")))
        #expect(lvm.map(\.message) == ["/boot/grub2 is on lvm (grub2-probe --target=abstraction): GRUB cannot write grubenv at boot, so boot-once cannot fall back (next_entry is never cleared: the one-shot boot becomes permanent); use bootloader: custom, or move /boot to a plain partition"])
        let e = try errors(rhel.replacingOccurrences(of: "set GRUB_DEFAULT=saved", with: "set GRUB_DEFAULT=0"))
        #expect(e == ["/etc/default/grub sets GRUB_DEFAULT=0, not saved: grubby --set-default would not make the new kernel the default, and a kernel that fails to boot would not fall back to the current one; set GRUB_DEFAULT=saved in /etc/default/grub and run grub2-mkconfig -o /boot/grub2/grub.cfg"])
        let probe = try errors(rhel.replacingOccurrences(of: "probe fs ok\nfs ext2", with: "probe fs error\nfs bash: grub2-probe: command not found"))
        #expect(probe.first?.hasPrefix("grub2-probe --target=fs /boot/grub2 failed (bash: grub2-probe: command not found)") == true, "\(probe)")
        // No layout line (an older rollctl's section) or an unknown one: Debian's.
        #expect(GrubSafety.parse(Self.section(Self.plain))?.layout == .grub)
        #expect(GrubSafety.parse(Self.section("layout grub3\n" + Self.plain))?.layout == .grub)
    }

    @Test func theCommandRunsInAShell() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", GrubSafety.command]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(p.terminationStatus == 0 && errors.isEmpty, "\(String(decoding: errors, as: UTF8.self))")
        #expect(text.hasPrefix("@@rollctl-file grub-safety\nlayout grub") && text.hasSuffix("\nend\n") && text.utf8.count < 2048, "\(text)")
        let g = try #require(GrubSafety.parse(text), "\(text)")
        if FileManager.default.isExecutableFile(atPath: "/usr/sbin/grub-probe") == false && FileManager.default.isExecutableFile(atPath: "/usr/bin/grub-probe") == false {
            #expect(g.abstractionError != nil && g.fsError != nil, "\(text)")
        }
        // The survey carries it before the bootloader detection's section, which stays last.
        #expect(PlanSurvey.command.contains(GrubSafety.command + "; " + BootloaderDetection.command))
    }

    @Test func noReadableSectionIsNoVerdictAndTheDriverFailsIt() {
        #expect(GrubSafety.parse("") == nil)
        #expect(GrubSafety.parse("@@rollctl-file grub-safety\ndefaults ok\nset GRUB_DEFAULT=saved\n") == nil)   // cut before `end`
        let f = GrubDriver().preflightFindings("bash: grub-probe: command not found\n")
        #expect(f.count == 1 && f[0].severity == .error && f[0].message.hasPrefix("the GRUB checks (GRUB_DEFAULT, grub-probe, grubenv) printed nothing readable"))
    }

    /// Control characters, invalid UTF-8, huge lines and endless output: bounded, sanitised, never a crash;
    /// a section printed before the last one (a host's own file echoing the marker) cannot stand in for it.
    @Test func hostileOutput() throws {
        let forged = Self.section(Self.plain)
        let evil = "defaults ok\nset GRUB_DEFAULT=\"\u{1b}[2Jsaved\u{7}\(String(repeating: "x", count: 1000))\"\nprobe abstraction ok\nabstraction \u{1b}]0;LVM\u{7}lvm \(String(repeating: "a", count: 600)) b c d e f\nprobe fs ok\nfs \u{0}ext2\u{fffd}\nenv ok\nenv recordfail=1\u{1b}[K\n"
        // Lines past 256 characters are cut (the command cuts at 200); the whole stays under 4 KiB.
        let g = try #require(GrubSafety.parse(forged + Self.section(evil)), "not parsed")
        let all = g.findings.map(\.message).joined()
        #expect(!all.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f || !$0.isASCII }, "\(all)")
        #expect(g.findings.filter { $0.severity == .error }.count == 2, "\(g.findings)")   // GRUB_DEFAULT not saved; on an abstraction
        #expect(g.grubDefault!.count <= 80 && g.abstraction!.count <= 4 && g.abstraction!.allSatisfy { $0.count <= 32 })
        #expect(g.fs == "ext2")
        // Endless output and invalid UTF-8: bounded and read; past 4 KiB the `end` is never seen.
        var bytes = Array("@@rollctl-file grub-safety\n".utf8) + [0xff, 0xfe, 0x0a]
        bytes += Array(repeating: UInt8(ascii: "y"), count: 1_000_000) + Array("\nend\n".utf8)
        #expect(GrubSafety.parse(String(decoding: bytes, as: UTF8.self)) == nil)
        #expect(GrubSafety.parse(Self.section(String(repeating: "set GRUB_DEFAULT\n", count: 10_000))) == nil)
    }
}
