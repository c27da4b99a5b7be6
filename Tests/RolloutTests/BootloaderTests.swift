import Testing
@testable import RolloutConfig
@testable import Engine

/// The bootloader drivers render exactly the commands the host gets (and the dry-run shows).
@Suite struct BootloaderTests {
    let plan = try! PlanLoader.parse(text: "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\n", path: "m.yaml")

    @Test func grubPinsTheOldDefaultThenBootsTheNewEntryOnce() {
        let g = BootloaderDrivers.driver(for: .grub)
        #expect(g.name == "grub")
        #expect(g.stage(plan, entry: "Advanced>new", previous: "Advanced>old") == ["grub-set-default 'Advanced>old'", "grub-reboot 'Advanced>new'"])
        #expect(g.commit(plan, entry: "Advanced>new") == ["grub-set-default 'Advanced>new'"])
        #expect(g.clearOneShot == ["grub-editenv /boot/grub/grubenv unset next_entry"])
        #expect(g.restoreDefault(plan, previousRelease: "6.1.0-18-amd64", previousEntry: "Advanced>old") == ["grub-set-default 'Advanced>old'"])
        let cfg = """
            menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-u' {
            \tlinux /vmlinuz-6.1.0-18-amd64 root=UUID=u ro quiet
            }
            submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-u' {
            \tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-18-amd64' --class debian $menuentry_id_option 'gnulinux-6.1.0-18-amd64-advanced-u' {
            \t\tlinux /vmlinuz-6.1.0-18-amd64 root=UUID=u ro quiet
            \t}
            }
            """
        #expect(g.entry(in: cfg, release: "6.1.0-18-amd64") != nil)
        #expect(g.entry(in: cfg, release: "5.10.0-1-amd64") == nil)
    }

    @Test func grubBLSFindsTheEntryIDPinsTheOldDefaultAndCommitsWithGrubby() throws {
        let g = BootloaderDrivers.driver(for: .grubBLS)
        #expect(g.name == "grub-bls")
        #expect(g.entryListing == "grubby --info=ALL")
        let mid = "4b1a7c0e9d2f4e6a8c3b5d7f9e1a2c4b"
        let old = try #require(g.entry(in: rhel9GrubbyInfo, release: "5.14.0-362.24.1.el9_3.x86_64"))
        let new = try #require(g.entry(in: rhel9GrubbyInfo, release: "5.14.0-427.13.1.el9_4.x86_64"))
        #expect(old == "\(mid)-5.14.0-362.24.1.el9_3.x86_64")
        let bls = try PlanLoader.parse(text: "name: m\nkernel: {release: 5.14.0-427.13.1.el9_4.x86_64}\ninventory: inv.yaml\nbootloader: grub-bls\n", path: "m.yaml")
        // The install (UPDATEDEFAULT=yes) made the new kernel the default: pinned back first, then boot-once.
        #expect(g.stage(bls, entry: new, previous: old) == ["grub2-set-default \(mid)-5.14.0-362.24.1.el9_3.x86_64",
                                                            "grub2-reboot \(mid)-5.14.0-427.13.1.el9_4.x86_64"])
        #expect(g.commit(bls, entry: new) == ["grubby --set-default /boot/vmlinuz-5.14.0-427.13.1.el9_4.x86_64"])
        #expect(g.clearOneShot == ["grub2-editenv - unset next_entry"])
        #expect(g.restoreDefault(bls, previousRelease: "5.14.0-362.24.1.el9_3.x86_64", previousEntry: old)
                == ["grubby --set-default /boot/vmlinuz-5.14.0-362.24.1.el9_3.x86_64"])
        #expect(HostCommands.install(bls, bootloader: g) == ["dnf install -y kernel-5.14.0-427.13.1.el9_4.x86_64"])
        // Every substituted value is shell-quoted: a hostile id or release stays one word.
        #expect(g.stage(bls, entry: "x'; reboot; '", previous: "a b") == [#"grub2-set-default 'a b'"#, #"grub2-reboot 'x'\''; reboot; '\'''"#])
        #expect(g.restoreDefault(bls, previousRelease: "1 $(reboot)", previousEntry: nil) == ["grubby --set-default '/boot/vmlinuz-1 $(reboot)'"])
        #expect(g.notes.contains { $0.contains("UPDATEDEFAULT=yes") })
    }

    @Test func systemdBootUsesTheEntryTokenAndBootctl() {
        let s = BootloaderDrivers.driver(for: .systemdBoot)
        let token = "\"$(cat /etc/kernel/entry-token 2>/dev/null || cat /etc/machine-id)\""
        #expect(s.name == "systemd-boot")
        #expect(s.entryListing == nil)
        #expect(s.stage(plan, entry: nil, previous: nil) == ["bootctl set-oneshot \(token)-6.1.0-19-hosting.conf"])
        #expect(s.commit(plan, entry: nil) == ["bootctl set-default \(token)-6.1.0-19-hosting.conf"])
        #expect(s.restoreDefault(plan, previousRelease: "6.1.0-18-amd64", previousEntry: nil) == ["bootctl set-default \(token)-6.1.0-18-amd64.conf"])
    }

    @Test func customCommandsGetTheirPlaceholdersShellQuoted() {
        let c = BootloaderDrivers.driver(for: .custom(stage: ["boot-once {release}"], commit: ["make-default {release}"], rollback: ["make-default {previous_release}"]))
        #expect(c.name == "custom")
        #expect(c.stage(plan, entry: nil, previous: nil) == ["boot-once 6.1.0-19-hosting"])
        #expect(c.restoreDefault(plan, previousRelease: "6.1 old", previousEntry: nil) == ["make-default '6.1 old'"])
        #expect(c.notes.count == 1)
    }
}
