import Basics
import Foundation
import Testing
import FleetsimCore

/// A systemd-boot host next to a Debian one: its ESP at /boot/efi with BLS type 1 entries,
/// kernel-install, bootctl, apt-get running kernel-install as Debian's zz-systemd-boot hook does,
/// and its firmware following the EFI variables as systemd-boot does. Needs root.
@Suite(.enabled(if: isRoot, "fleetsim needs root"))
struct SystemdBootFlavourTests {
    /// `bootctl list --json=short` on host `i`: the entries, in order.
    func entries(_ f: TestFleet, _ i: Int) async throws -> [[String: Any]] {
        let text = await f.sshOut(i, "bootctl list --json=short")
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]], "\(text)")
    }

    func bootedKernels(_ f: TestFleet, _ i: Int) -> [String] {
        f.bootLog(i).compactMap { $0.split(separator: " ").dropFirst(3).first.map(String.init) }
    }

    @Test func systemdBootHostHasAnESPBootctlKernelInstallAndBootsOnceByEntryID() async throws {
        try await withFleet(hosts: 2, third: 57, extra: ["--flavours", "systemd-boot:1"]) { f in
            let inv = try #require(readFile(f.dir + "/inventory.yaml"))
            #expect(inv.contains("  - name: web-001\n    address: \(f.address(1))\n    labels: {rack: r1, cluster: c1, flavour: systemd-boot}\n"))

            // Debian, with systemd-boot and no GRUB: what `bootloader: auto` looks for.
            #expect(await f.sshOut(1, ". /etc/os-release; echo $ID $VERSION_ID") == "debian 13")
            let mid = await f.sshOut(1, "cat /etc/machine-id")
            #expect(mid.count == 32 && mid.allSatisfy(\.isHexDigit), "\(mid)")
            #expect(await f.sshOut(1, "test -e /boot/grub/grub.cfg || echo none; ls /boot/efi/loader/entries; cat /boot/efi/loader/loader.conf")
                    == "none\n\(mid)-6.1.0-17-hosting.conf\n#timeout 3\n#console-mode keep")
            #expect(await f.sshOut(1, "cat /boot/efi/loader/entries/\(mid)-6.1.0-17-hosting.conf").contains(
                "title      Debian GNU/Linux 13 (trixie)\nversion    6.1.0-17-hosting\nmachine-id \(mid)\nsort-key   debian\n"))
            #expect(await f.sshOut(1, "cat /boot/efi/\(mid)/6.1.0-17-hosting/linux") == "fleetsim: simulated Linux kernel image 6.1.0-17-hosting")
            #expect(await f.sshOut(1, "bootctl is-installed") == "yes")

            // bootctl list as systemd 257 prints it; the running entry is selected and (no variable set) the default.
            var list = try await entries(f, 1)
            #expect(list.count == 1)
            #expect(list.first?["id"] as? String == "\(mid)-6.1.0-17-hosting.conf")
            #expect(list.first?["type"] as? String == "type1")
            #expect(list.first?["version"] as? String == "6.1.0-17-hosting")
            #expect(list.first?["linux"] as? String == "/\(mid)/6.1.0-17-hosting/linux")
            #expect(list.first?["path"] as? String == "/boot/efi/loader/entries/\(mid)-6.1.0-17-hosting.conf")
            #expect(list.first?["isDefault"] as? Bool == true && list.first?["isSelected"] as? Bool == true)
            let pretty = await f.sshOut(1, "bootctl list --json=pretty")
            #expect(pretty.hasPrefix("[\n\t{\n\t\t\"type\" : \"type1\","), "\(pretty)")
            #expect(await f.sshOut(1, "bootctl list").contains("title: Debian GNU/Linux 13 (trixie) (default) (selected)"))

            // Bad input is refused as bootctl refuses it.
            let verb = await f.ssh(1, "bootctl frobnicate")
            #expect(verb.status == 1 && verb.err == "Unknown command verb 'frobnicate'.\n", "\(verb)")
            let json = await f.ssh(1, "bootctl list --json=yaml")
            #expect(json.status == 1 && json.err.contains("Unknown argument to --json= suboption: yaml"), "\(json)")
            let few = await f.ssh(1, "bootctl set-default")
            #expect(few.status == 1 && few.err == "Too few arguments.\n", "\(few)")
            let many = await f.ssh(1, "bootctl set-oneshot a b")
            #expect(many.status == 1 && many.err == "Too many arguments.\n", "\(many)")
            let opt = await f.ssh(1, "bootctl --bogus list")
            #expect(opt.status == 1 && opt.err.contains("unrecognized option '--bogus'"), "\(opt)")
            let ki = await f.ssh(1, "kernel-install frob 1")
            #expect(ki.status == 1 && ki.err == "Unknown command verb 'frob'.\n", "\(ki)")

            // Each flavour's tools exist only on its hosts.
            let grub = await f.ssh(1, "grub-reboot x")
            #expect(grub.status == 127 && grub.err.contains("grub-reboot: command not found"), "\(grub)")
            let bootctlOnDebian = await f.ssh(2, "bootctl list")
            #expect(bootctlOnDebian.status == 127, "\(bootctlOnDebian)")

            // apt-get: the package's zz-systemd-boot hook runs kernel-install, which writes the entry.
            let install = await f.ssh(1, "apt-get install -y linux-image-6.1.0-19-hosting")
            #expect(install.status == 0 && install.out.contains("/etc/kernel/postinst.d/zz-systemd-boot:"), "\(install)")
            #expect(!install.out.contains("update-grub") && !install.err.contains("grub"), "\(install)")
            #expect(await f.sshOut(1, "ls /boot/efi/loader/entries") == "\(mid)-6.1.0-17-hosting.conf\n\(mid)-6.1.0-19-hosting.conf")
            // No default saved: the newest entry sorts first and is the default now.
            list = try await entries(f, 1)
            #expect(list.compactMap { $0["version"] as? String } == ["6.1.0-19-hosting", "6.1.0-17-hosting"])
            #expect(list.first?["isDefault"] as? Bool == true)

            // Pinned, then booted once: the one-shot entry boots and is gone; the next boot is the default.
            let once = await f.ssh(1, "bootctl set-default \(mid)-6.1.0-17-hosting.conf && bootctl set-oneshot \(mid)-6.1.0-19-hosting.conf && reboot")
            #expect(once.status == 0, "\(once)")
            _ = try #require(await f.waitUp(1, boots: 2))
            #expect(await f.sshOut(1, "uname -r") == "6.1.0-19-hosting")
            let vars = readFile(f.dir + "/hosts/web-001/efivars") ?? ""
            #expect(!vars.contains("LoaderEntryOneShot") && vars.contains("LoaderEntryDefault=\(mid)-6.1.0-17-hosting.conf"), "\(vars)")
            list = try await entries(f, 1)
            #expect(list.map { $0["isDefault"] as? Bool } == [false, true] && list.map { $0["isSelected"] as? Bool } == [true, false], "\(list)")
            _ = await f.ssh(1, "reboot")
            _ = try #require(await f.waitUp(1, boots: 3))
            #expect(await f.sshOut(1, "uname -r") == "6.1.0-17-hosting")

            // An empty id clears a staged one-shot entry; @current names the running one.
            #expect(await f.ssh(1, "bootctl set-oneshot \(mid)-6.1.0-19-hosting.conf && bootctl set-oneshot '' && bootctl set-default @current && reboot").status == 0)
            _ = try #require(await f.waitUp(1, boots: 4))
            #expect(await f.sshOut(1, "uname -r") == "6.1.0-17-hosting")

            // A kernel that panics boots once, resets, and the firmware falls back to the saved default.
            #expect(await f.ssh(1, "apt-get install -y linux-image-6.1.0-20-hosting && bootctl set-oneshot \(mid)-6.1.0-20-hosting.conf && reboot").status == 0)
            _ = try #require(await f.waitUp(1, boots: 5))
            #expect(await f.sshOut(1, "uname -r") == "6.1.0-17-hosting")
            #expect(f.bootLog(1).last { $0.hasSuffix(" panic") }?.contains("6.1.0-20-hosting") == true, "\(f.bootLog(1))")
            // Without a saved default the newest entry boots: the panicking one, at every reset.
            #expect(await f.ssh(1, "bootctl set-default '' && reboot").status == 0)
            await pause(3)
            #expect(f.bootLog(1).filter { $0.hasSuffix(" panic") }.count >= 2, "\(f.bootLog(1))")
            #expect(bootedKernels(f, 1).filter { !$0.isEmpty }.contains("6.1.0-20-hosting"))
            // The Debian host next to it kept its GRUB.
            #expect(await f.sshOut(2, "grub-editenv list").contains("saved_entry=\(titlePath("6.1.0-17-hosting"))"))
        }
    }

    @Test func flavourParsesFromOptionAndScenario() throws {
        #expect(try Setup.parseFlavours("systemd-boot", hosts: 2) == [.systemdBoot, .systemdBoot])
        #expect(try Setup.parseFlavours("debian:2,systemd-boot:3", hosts: 5) == [.debian, .debian, .systemdBoot, .systemdBoot, .systemdBoot])
        #expect(throws: FleetsimError.self) { try Setup.parseFlavours("systemd_boot", hosts: 2) }
        let sc = try Scenario.parse(yaml: "hosts:\n  web-003: {flavour: systemd-boot}\n", source: "s.yaml")
        #expect(sc.hosts["web-003"]?.flavour == .systemdBoot)
    }

    /// systemd-boot's choice: the one-shot entry once (removed as read), else the default, else
    /// loader.conf's pattern, else the first in sort order (newest version first).
    @Test func firmwareChoosesAsSystemdBootDoes() {
        func e(_ v: String) -> SystemdBoot.Entry {
            .init(id: "m-\(v).conf", title: "T", version: v, machineID: "m", sortKey: "debian", options: "", linux: "/m/\(v)/linux", initrd: [])
        }
        let entries = [e("6.1.0-19"), e("6.1.0-17")]
        var c = SystemdBoot.choose(entries: entries, vars: ["LoaderEntryOneShot": "m-6.1.0-19.conf", "LoaderEntryDefault": "m-6.1.0-17.conf"], loaderConf: nil)
        #expect(c.entry?.version == "6.1.0-19" && c.vars["LoaderEntryOneShot"] == nil && c.vars["LoaderEntrySelected"] == "m-6.1.0-19.conf")
        c = SystemdBoot.choose(entries: entries, vars: c.vars, loaderConf: nil)
        #expect(c.entry?.version == "6.1.0-17")
        c = SystemdBoot.choose(entries: entries, vars: ["LoaderEntryOneShot": "gone.conf", "LoaderEntryDefault": "m-6.1.0-17"], loaderConf: nil)
        #expect(c.entry?.version == "6.1.0-17" && c.note?.contains("gone.conf") == true, "an id without .conf still names its entry")
        #expect(SystemdBoot.choose(entries: entries, vars: [:], loaderConf: "default m-6.1.0-17*\n").entry?.version == "6.1.0-17")
        #expect(SystemdBoot.choose(entries: entries, vars: [:], loaderConf: SystemdBoot.loaderConf).entry?.version == "6.1.0-19")
        #expect(SystemdBoot.choose(entries: [], vars: [:], loaderConf: nil).entry == nil)
        #expect(SystemdBoot.release(of: e("6.1.0-17")) == "6.1.0-17")
    }
}
