import Basics
import Foundation
import Testing
import FleetsimCore

/// A rhel host next to a Debian one: its /etc, BLS entries, grubby, dnf, rpm and grub2-* tools,
/// and its firmware following grubenv by entry id. Needs root.
@Suite(.enabled(if: isRoot, "fleetsim needs root"))
struct RHELFlavourTests {
    @Test func rhelHostHasBLSEntriesGrubbyDnfAndBootsOnceByEntryID() async throws {
        try await withFleet(hosts: 2, third: 71, extra: ["--flavours", "rhel:1"]) { f in
            let inv = try #require(readFile(f.dir + "/inventory.yaml"))
            #expect(inv.contains("  - name: web-001\n    address: \(f.address(1))\n    labels: {rack: r1, cluster: c1, flavour: rhel}\n"))
            #expect(inv.contains("  - name: web-002\n    address: \(f.address(2))\n    labels: {rack: r2, cluster: c1}\n"))

            // /etc as RHEL 9 has it, for this host only.
            #expect(await f.sshOut(1, ". /etc/os-release; echo $ID $VERSION_ID") == "rhel 9.4")
            #expect(await f.sshOut(2, ". /etc/os-release; echo $ID") != "rhel")
            let mid = await f.sshOut(1, "cat /etc/machine-id")
            #expect(mid.count == 32 && mid.allSatisfy(\.isHexDigit), "\(mid)")
            #expect(await f.sshOut(1, "grep ^UPDATEDEFAULT= /etc/sysconfig/kernel") == "UPDATEDEFAULT=yes")
            #expect(await f.sshOut(1, "ls /boot/loader/entries") == "\(mid)-0-rescue.conf\n\(mid)-6.1.0-17-hosting.conf")
            #expect(await f.sshOut(1, "cat /boot/loader/entries/\(mid)-6.1.0-17-hosting.conf").hasPrefix(
                "title Red Hat Enterprise Linux (6.1.0-17-hosting) 9.4 (Plow)\nversion 6.1.0-17-hosting\nlinux /vmlinuz-6.1.0-17-hosting\ninitrd /initramfs-6.1.0-17-hosting.img $tuned_initrd\n"))

            // grubby prints what RHEL 9's grubby prints: /boot prefixed, root= apart from args, newest first.
            let info = await f.sshOut(1, "grubby --info=ALL")
            #expect(info.hasPrefix("""
                index=0
                kernel="/boot/vmlinuz-6.1.0-17-hosting"
                args="ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap $tuned_params"
                root="/dev/mapper/rhel-root"
                initrd="/boot/initramfs-6.1.0-17-hosting.img $tuned_initrd"
                title="Red Hat Enterprise Linux (6.1.0-17-hosting) 9.4 (Plow)"
                id="\(mid)-6.1.0-17-hosting"
                index=1
                kernel="/boot/vmlinuz-0-rescue-\(mid)"
                """), "\(info)")
            #expect(await f.sshOut(1, "grubby --default-kernel; grubby --default-index") == "/boot/vmlinuz-6.1.0-17-hosting\n0")
            #expect(await f.sshOut(1, "grub2-editenv list").contains("saved_entry=\(mid)-6.1.0-17-hosting"))
            #expect(await f.sshOut(1, "rpm -q kernel") == "kernel-6.1.0-17-hosting.x86_64")

            // Each distribution's tools exist only on its hosts.
            let apt = await f.ssh(1, "apt-get install -y linux-image-6.1.0-19-hosting")
            #expect(apt.status == 127 && apt.err.contains("apt-get: command not found"), "\(apt)")
            let grubbyOnDebian = await f.ssh(2, "grubby --info=ALL")
            #expect(grubbyOnDebian.status == 127, "\(grubbyOnDebian)")

            // dnf: unknown package, no -y without a terminal, then the install (UPDATEDEFAULT=yes: the new default).
            let unknown = await f.ssh(1, "dnf install -y kernel-6.1.0-99-hosting")
            #expect(unknown.status == 1 && unknown.err.contains("Error: Unable to find a match: kernel-6.1.0-99-hosting"), "\(unknown)")
            let asks = await f.ssh(1, "dnf install kernel-6.1.0-19-hosting")
            #expect(asks.status == 1 && asks.out.contains("Operation aborted."), "\(asks)")
            #expect(await f.sshOut(1, "rpm -q kernel") == "kernel-6.1.0-17-hosting.x86_64")
            #expect(await f.fleetsim(["set", "web-001", "boot_full=true"]).status == 0)
            let full = await f.ssh(1, "dnf install -y kernel-6.1.0-19-hosting")
            #expect(full.status == 1 && full.err.contains("installing package kernel-core-6.1.0-19-hosting.x86_64 needs 62MB more space on the /boot filesystem"), "\(full)")
            #expect(await f.sshOut(1, "rpm -q kernel; ls /boot/loader/entries | wc -l") == "kernel-6.1.0-17-hosting.x86_64\n2", "nothing installed")
            #expect(await f.fleetsim(["set", "web-001", "boot_full=false"]).status == 0)
            let install = await f.ssh(1, "dnf install -y kernel-6.1.0-19-hosting")
            #expect(install.status == 0 && install.out.hasSuffix("Complete!\n"), "\(install)")
            #expect(await f.sshOut(1, "rpm -q kernel") == "kernel-6.1.0-17-hosting.x86_64\nkernel-6.1.0-19-hosting.x86_64")
            #expect(await f.sshOut(1, "grubby --default-kernel") == "/boot/vmlinuz-6.1.0-19-hosting", "UPDATEDEFAULT=yes made it the default")
            #expect(await f.sshOut(1, "grubby --info=/boot/vmlinuz-6.1.0-19-hosting | grep -E '^(index|id)='") == "index=0\nid=\"\(mid)-6.1.0-19-hosting\"")
            let again = await f.ssh(1, "dnf install -y kernel-6.1.0-19-hosting")
            #expect(again.status == 0 && again.out.contains("is already installed"), "\(again)")

            // Pinned back, both spellings of --set-default; a wrong kernel path is refused.
            let pin = await f.ssh(1, "grubby --set-default /boot/vmlinuz-6.1.0-17-hosting")
            #expect(pin.status == 0 && pin.err == "The default is /boot/loader/entries/\(mid)-6.1.0-17-hosting.conf with index 1 and kernel /boot/vmlinuz-6.1.0-17-hosting\n", "\(pin)")
            #expect(await f.ssh(1, "grubby --set-default=/boot/vmlinuz-6.1.0-17-hosting").status == 0)
            let wrong = await f.ssh(1, "grubby --info=/boot/vmlinuz-6.1.0-18-hosting")
            #expect(wrong.status == 1 && wrong.err == "The param /boot/vmlinuz-6.1.0-18-hosting is incorrect\n", "\(wrong)")

            // grub2-reboot boots the entry once; the next plain reboot is the saved default again.
            let r = await f.ssh(1, "grub2-reboot \(mid)-6.1.0-19-hosting && grub2-editenv list && reboot")
            #expect(r.out.contains("next_entry=\(mid)-6.1.0-19-hosting"), "\(r)")
            _ = try #require(await f.waitUp(1, boots: 2))
            #expect(await f.sshOut(1, "uname -r") == "6.1.0-19-hosting")
            let env = await f.sshOut(1, "grub2-editenv - list")
            #expect(env.contains("next_entry=\n") || env.hasSuffix("next_entry="), "\(env)")
            #expect(env.contains("saved_entry=\(mid)-6.1.0-17-hosting"))
            _ = await f.ssh(1, "reboot")
            _ = try #require(await f.waitUp(1, boots: 3))
            #expect(await f.sshOut(1, "uname -r") == "6.1.0-17-hosting")
            // A saved_entry that names no entry: GRUB boots the first entry, the newest kernel.
            _ = await f.ssh(1, "grub2-editenv - set saved_entry=no-such-entry && reboot")
            _ = try #require(await f.waitUp(1, boots: 4))
            #expect(await f.sshOut(1, "uname -r") == "6.1.0-19-hosting")
            #expect(f.bootLog(1).compactMap { $0.split(separator: " ").dropFirst(3).first.map(String.init) }
                    == ["6.1.0-17-hosting", "6.1.0-19-hosting", "6.1.0-17-hosting", "6.1.0-19-hosting"])
            // The Debian host next to it kept its GRUB.
            #expect(await f.sshOut(2, "grub-editenv list").contains("saved_entry=\(titlePath("6.1.0-17-hosting"))"))
        }
    }

    @Test func flavoursOptionAndScenarioKeyAreChecked() throws {
        #expect(try Setup.parseFlavours("rhel", hosts: 3) == [.rhel, .rhel, .rhel])
        #expect(try Setup.parseFlavours("debian:1,rhel:2", hosts: 4) == [.debian, .rhel, .rhel])
        #expect(try Setup.parseFlavours("ubuntu:2,debian:1", hosts: 4) == [.ubuntu, .ubuntu, .debian])
        for bad in ["rhle", "rhel:x", "rhel:5", "rhel:1,,debian:1"] {
            #expect(throws: FleetsimError.self, "\(bad)") { try Setup.parseFlavours(bad, hosts: 4) }
        }
        let sc = try Scenario.parse(yaml: "hosts:\n  web-003: {flavour: rhel}\n", source: "s.yaml")
        #expect(sc.hosts["web-003"]?.flavour == .rhel)
        do {
            _ = try Scenario.parse(yaml: "hosts:\n  web-003: {flavour: centos}\n", source: "s.yaml")
            Issue.record("flavour centos accepted")
        } catch let e as FleetsimError {
            #expect(e.message.contains("s.yaml: hosts.web-003.flavour: 'centos' is not a flavour (known: debian, rhel, systemd-boot, ubuntu)"), "\(e.message)")
            #expect(e.exitCode == 2)
        }
    }
}
