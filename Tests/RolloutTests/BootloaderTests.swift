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

    @Test func systemdBootFindsTheEntryWithBootctlListPinsTheOldDefaultAndSetsItsOneShot() throws {
        let s = BootloaderDrivers.driver(for: .systemdBoot)
        #expect(s.name == "systemd-boot")
        #expect(s.entryListing == "bootctl list --json=short --no-pager")
        let mid = "0123456789abcdef0123456789abcdef"
        let old = try #require(s.entry(in: debian13BootctlList, release: "6.12.41+deb13-amd64"))
        let new = try #require(s.entry(in: debian13BootctlList, release: "6.12.48+deb13-amd64"))
        #expect(old == "\(mid)-6.12.41+deb13-amd64.conf")
        #expect(s.entry(in: debian13BootctlList, release: "6.12.4") == nil)
        // The install alone made the newest entry the default: the running one is saved first, then boot-once.
        #expect(s.stage(plan, entry: new, previous: old) == ["bootctl set-default \(mid)-6.12.41+deb13-amd64.conf",
                                                             "bootctl set-oneshot \(mid)-6.12.48+deb13-amd64.conf"])
        #expect(s.commit(plan, entry: new) == ["bootctl set-default \(mid)-6.12.48+deb13-amd64.conf"])
        #expect(s.clearOneShot == ["bootctl set-oneshot ''"])
        #expect(s.restoreDefault(plan, previousRelease: "6.12.41+deb13-amd64", previousEntry: old) == ["bootctl set-default \(mid)-6.12.41+deb13-amd64.conf"])
        // Every substituted value is shell-quoted.
        #expect(s.stage(plan, entry: "x'; reboot; '", previous: "a b") == [#"bootctl set-default 'a b'"#, #"bootctl set-oneshot 'x'\''; reboot; '\'''"#])
        #expect(s.commit(plan, entry: "$(reboot)") == ["bootctl set-default '$(reboot)'"])
        // The dry-run: the new kernel's id modelled on the running one's; without a listing, a placeholder.
        #expect(s.expectedEntry(in: debian13BootctlList, release: "6.12.57+deb13-amd64", like: "6.12.41+deb13-amd64") == "\(mid)-6.12.57+deb13-amd64.conf")
        #expect(s.expectedEntry(in: nil, release: "6.12.57+deb13-amd64", like: nil) == "<entry-token>-6.12.57+deb13-amd64.conf")
        #expect(s.stageDescription(release: "R").contains("bootctl set-oneshot"))
        #expect(s.notes.contains { $0.contains("newest entry") })
        #expect(HostCommands.install(plan, bootloader: s) == ["DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-6.1.0-19-hosting"])
    }

    /// The check step's pre-check: systemd-boot must be in the ESP for a one-shot entry to mean anything.
    @Test func systemdBootsPreflightAsksBootctlIsInstalled() throws {
        let s = SystemdBootDriver()
        let command = try #require(s.preflight)
        #expect(command.contains("bootctl is-installed"))
        let marker = "@@rollctl-file systemd-boot\n"
        #expect(s.preflightFindings(marker + "yes\n").isEmpty)
        #expect(s.preflightFindings("junk\n" + marker + "  yes \n\n").isEmpty)
        #expect(s.preflightFindings(marker + "no\n").map(\.severity) == [.error])
        let lost = s.preflightFindings(marker + "Couldn't find EFI system partition. It is recommended to mount it to /boot/ or /efi/.\n")
        #expect(lost.count == 1 && lost[0].severity == .error && lost[0].message.contains("Couldn't find EFI system partition"), "\(lost)")
        #expect(s.preflightFindings("yes\n").map(\.severity) == [.error], "no marker: nothing readable")
        // A section printed earlier by the host cannot answer for the real one.
        #expect(s.preflightFindings(marker + "yes\n" + marker + "no\n").map(\.severity) == [.error])
        let hostile = s.preflightFindings(marker + "\u{1B}[2J" + String(repeating: "x", count: 10_000) + "\n")
        #expect(hostile.count == 1 && !hostile[0].message.contains("\u{1B}") && hostile[0].message.count < 300)
    }

    @Test func customCommandsGetTheirPlaceholdersShellQuoted() {
        let c = BootloaderDrivers.driver(for: .custom(stage: ["boot-once {release}"], commit: ["make-default {release}"], rollback: ["make-default {previous_release}"]))
        #expect(c.name == "custom")
        #expect(c.stage(plan, entry: nil, previous: nil) == ["boot-once 6.1.0-19-hosting"])
        #expect(c.restoreDefault(plan, previousRelease: "6.1 old", previousEntry: nil) == ["make-default '6.1 old'"])
        #expect(c.notes.count == 1)
    }
}
