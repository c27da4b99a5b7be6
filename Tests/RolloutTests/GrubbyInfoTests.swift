import Foundation
import Testing
@testable import RolloutConfig
@testable import Engine

/// `grubby --info=ALL` as RHEL 9's grubby prints it on an LVM install with two kernels and the
/// rescue entry: `/boot` is its own partition (so grubby prefixes `/boot`), `root=` is split out
/// of `args`, tuned's `$tuned_params`/`$tuned_initrd` are left unexpanded (not set in grubenv).
let rhel9GrubbyInfo = #"""
index=0
kernel="/boot/vmlinuz-5.14.0-427.13.1.el9_4.x86_64"
args="ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap $tuned_params"
root="/dev/mapper/rhel-root"
initrd="/boot/initramfs-5.14.0-427.13.1.el9_4.x86_64.img $tuned_initrd"
title="Red Hat Enterprise Linux (5.14.0-427.13.1.el9_4.x86_64) 9.4 (Plow)"
id="4b1a7c0e9d2f4e6a8c3b5d7f9e1a2c4b-5.14.0-427.13.1.el9_4.x86_64"
index=1
kernel="/boot/vmlinuz-5.14.0-362.24.1.el9_3.x86_64"
args="ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap $tuned_params"
root="/dev/mapper/rhel-root"
initrd="/boot/initramfs-5.14.0-362.24.1.el9_3.x86_64.img $tuned_initrd"
title="Red Hat Enterprise Linux (5.14.0-362.24.1.el9_3.x86_64) 9.3 (Plow)"
id="4b1a7c0e9d2f4e6a8c3b5d7f9e1a2c4b-5.14.0-362.24.1.el9_3.x86_64"
index=2
kernel="/boot/vmlinuz-0-rescue-4b1a7c0e9d2f4e6a8c3b5d7f9e1a2c4b"
args="ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap"
root="/dev/mapper/rhel-root"
initrd="/boot/initramfs-0-rescue-4b1a7c0e9d2f4e6a8c3b5d7f9e1a2c4b.img"
title="Red Hat Enterprise Linux (0-rescue-4b1a7c0e9d2f4e6a8c3b5d7f9e1a2c4b) 9.4 (Plow)"
id="4b1a7c0e9d2f4e6a8c3b5d7f9e1a2c4b-0-rescue"

"""#

/// Fedora on btrfs without a /boot partition: no `/boot` prefix is added, the kernel path is
/// already `/boot/...` in the entry; `root=` in args as `UUID=`; an admin's `~custom` copy of
/// the running kernel's entry (what `grubby --add-kernel` makes for an existing kernel) sits
/// beside kernel-install's own.
let fedoraGrubbyInfo = #"""
index=0
kernel="/boot/vmlinuz-6.8.5-301.fc40.x86_64"
args="ro rootflags=subvol=root rhgb quiet"
root="UUID=2f0c9a44-7f1e-4c2d-9b8a-6e5d4c3b2a19"
initrd="/boot/initramfs-6.8.5-301.fc40.x86_64.img"
title="Fedora Linux (6.8.5-301.fc40.x86_64) 40 (Workstation Edition) with a custom cmdline"
id="0f3e1d2c4b5a69788796a5b4c3d2e1f0-6.8.5-301.fc40.x86_64.0~custom"
index=1
kernel="/boot/vmlinuz-6.8.5-301.fc40.x86_64"
args="ro rootflags=subvol=root rhgb quiet"
root="UUID=2f0c9a44-7f1e-4c2d-9b8a-6e5d4c3b2a19"
initrd="/boot/initramfs-6.8.5-301.fc40.x86_64.img"
title="Fedora Linux (6.8.5-301.fc40.x86_64) 40 (Workstation Edition)"
id="0f3e1d2c4b5a69788796a5b4c3d2e1f0-6.8.5-301.fc40.x86_64"
"""#

@Suite struct GrubbyInfoTests {
    let mid = "4b1a7c0e9d2f4e6a8c3b5d7f9e1a2c4b"

    @Test func readsEveryEntryOfRHEL9() {
        let info = GrubbyInfo.parse(rhel9GrubbyInfo)
        #expect(info.entries.map(\.index) == [0, 1, 2])
        #expect(info.entries.map(\.release) == ["5.14.0-427.13.1.el9_4.x86_64", "5.14.0-362.24.1.el9_3.x86_64", "0-rescue-\(mid)"])
        #expect(info.entries.map(\.isRescue) == [false, false, true])
        #expect(info.entries[0].root == "/dev/mapper/rhel-root")
        #expect(info.entries[0].args?.hasSuffix("$tuned_params") == true)
        #expect(info.entries[0].title == "Red Hat Enterprise Linux (5.14.0-427.13.1.el9_4.x86_64) 9.4 (Plow)")
        #expect(info.entries[1].initrd == "/boot/initramfs-5.14.0-362.24.1.el9_3.x86_64.img $tuned_initrd")
    }

    @Test func findsTheEntryIDOfARelease() {
        let info = GrubbyInfo.parse(rhel9GrubbyInfo)
        #expect(info.entryID(forRelease: "5.14.0-362.24.1.el9_3.x86_64") == "\(mid)-5.14.0-362.24.1.el9_3.x86_64")
        #expect(info.entryID(forRelease: "5.14.0-427.13.1.el9_4.x86_64") == "\(mid)-5.14.0-427.13.1.el9_4.x86_64")
        #expect(info.entryID(forRelease: "5.14.0-427") == nil, "a prefix of a release is not the release")
        #expect(info.entryID(forRelease: "0-rescue-\(mid)") == nil, "the rescue entry is never a kernel to roll")
        // kernel-install's entry wins over an admin's ~custom copy listed first.
        #expect(GrubbyInfo.parse(fedoraGrubbyInfo).entryID(forRelease: "6.8.5-301.fc40.x86_64") == "0f3e1d2c4b5a69788796a5b4c3d2e1f0-6.8.5-301.fc40.x86_64")
    }

    @Test func predictsTheIDOfAKernelNotYetInstalled() {
        let info = GrubbyInfo.parse(rhel9GrubbyInfo)
        #expect(info.expectedEntryID(forRelease: "5.14.0-503.11.1.el9_5.x86_64", like: "5.14.0-427.13.1.el9_4.x86_64") == "\(mid)-5.14.0-503.11.1.el9_5.x86_64")
        #expect(info.expectedEntryID(forRelease: "5.14.0-503.11.1.el9_5.x86_64", like: nil) == nil)
        let d = GrubBLSDriver()
        #expect(d.expectedEntry(in: nil, release: "6.1.0-19-hosting", like: nil) == "<machine-id>-6.1.0-19-hosting")
    }

    @Test func quotesInsideValuesCRLFAndLinesThatAreNotKeyValue() {
        let info = GrubbyInfo.parse("garbage before any index\r\nid=\"orphan\"\r\nindex=0\r\nkernel=\"/vmlinuz-6.1.0-19-hosting\"\r\ntitle=\"It \"quoted\" here\"\r\nnot a pair\r\nid=\"m-6.1.0-19-hosting\"\r\nindex=x\r\nkernel=\"/boot/vmlinuz-\"\r\n")
        #expect(info.entries.count == 2)
        #expect(info.entries[0].title == #"It "quoted" here"#)
        #expect(info.entries[0].release == "6.1.0-19-hosting", "/boot on the root filesystem: /vmlinuz-<release>")
        #expect(info.entryID(forRelease: "6.1.0-19-hosting") == "m-6.1.0-19-hosting")
        #expect(info.entries[1].index == nil && info.entries[1].release == nil)
        #expect(GrubbyInfo.parse("").entries.isEmpty)
        // An id with a newline or an escape sequence is never handed to a command.
        let bad = GrubbyInfo.parse("index=0\nkernel=\"/boot/vmlinuz-1.0\"\nid=\"x\u{1b}[2J-1.0\"\n")
        #expect(bad.entryID(forRelease: "1.0") == nil)
    }

    /// Hostile output: random bytes, huge inputs, endless `index=` lines. Never traps, stays bounded.
    @Test func hostileOutputNeverCrashesAndIsBounded() {
        var rng = SystemRandomNumberGenerator()
        let pieces = ["index=", "kernel=\"", "/boot/vmlinuz-", "id=\"", "\"", "\n", "\r", "=", "\u{0}", "é", "\u{FFFD}", "6.1.0-19-hosting", " "]
        for _ in 0..<300 {
            var s = ""
            for _ in 0..<Int.random(in: 0...200, using: &rng) {
                if Bool.random(using: &rng) { s += pieces.randomElement(using: &rng)! } else {
                    s += String(decoding: (0..<Int.random(in: 1...8, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, as: UTF8.self)
                }
            }
            let info = GrubbyInfo.parse(s)
            _ = info.entryID(forRelease: "6.1.0-19-hosting")
            _ = info.expectedEntryID(forRelease: "6.1.0-20-hosting", like: "6.1.0-19-hosting")
            #expect(info.entries.count <= GrubbyInfo.maxEntries)
        }
        let flood = String(repeating: "index=1\nkernel=\"/boot/vmlinuz-1\"\nid=\"a-1\"\n", count: 10_000)
        #expect(GrubbyInfo.parse(flood).entries.count == GrubbyInfo.maxEntries)
        let long = "index=0\nid=\"" + String(repeating: "a", count: 5 << 20) + "\"\n"
        let info = GrubbyInfo.parse(long)
        #expect(info.entries.count == 1, "only the first 4 MiB are read")
    }
}
