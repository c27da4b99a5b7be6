import Foundation
import Testing
import SSHTesting
#if canImport(Glibc)
import Glibc
#endif

/// End-to-end: systemd-boot on fleetsim's systemd-boot hosts (Debian 13, the ESP at /boot/efi with
/// kernel-install's type 1 entries, bootctl, no GRUB; the firmware following LoaderEntryOneShot and
/// LoaderEntryDefault). Needs root; skipped otherwise.
@Suite("systemd-boot rollouts on fleetsim systemd-boot hosts", .serialized, .enabled(if: geteuid() == 0))
struct SystemdBootE2ETests {
    typealias Fleet = RolloutE2ETests.Fleet

    /// The host's EFI variables as its firmware keeps them (fleetsim's file, not the host's word).
    func efiVars(_ fleet: Fleet, _ host: String) -> [String: String] {
        let text = (try? String(contentsOfFile: fleet.dir + "/fleet/hosts/\(host)/efivars", encoding: .utf8)) ?? ""
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            if let eq = line.firstIndex(of: "=") { out[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
        }
        return out
    }

    @Test func autoDetectsSystemdBootAndEveryHostBootsTheNewKernelOnceThenItIsTheDefault() throws {
        let fleet = try Fleet(hosts: 4, racks: 2, slot: 56, flavours: "systemd-boot"); defer { fleet.down() }
        // No `bootloader` key: auto, which finds bootctl and the ESP's entries and no GRUB.
        let plan = try fleet.plan(release: "6.1.0-19-hosting", waves: "[1, 100%]", bootloader: nil)
        let mids = try fleet.stdout("cat /etc/machine-id")
        #expect(Set(mids.values).count == 4, "every host has its own machine id: \(mids)")
        let dry = try fleet.apply(plan, ["--dry-run"])
        #expect(dry.status == 0, "\(dry.output)")
        let mid = try #require(mids["web-001"])
        // The preview reads the example host's entries with bootctl: the new kernel's id is modelled on the running one's.
        for text in ["bootloader auto: systemd-boot on 4 hosts", "Steps for web-001 (example, bootloader systemd-boot)",
                     "apt-get install -y linux-image-6.1.0-19-hosting", "bootctl list --json=short", "bootctl is-installed",
                     "bootctl set-default \(mid)-6.1.0-17-hosting.conf", "bootctl set-oneshot \(mid)-6.1.0-19-hosting.conf",
                     "bootctl set-default \(mid)-6.1.0-19-hosting.conf", "bootctl set-oneshot ''"] {
            #expect(dry.output.contains(text), "dry-run lacks '\(text)':\n\(dry.output)")
        }
        let r = try fleet.apply(plan)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("completed: every host committed to 6.1.0-19-hosting"), "\(r.output)")
        let doc = try fleet.lastRollout()
        #expect(doc["state"] as? String == "completed")
        #expect(Set(fleet.hostStates(doc).values) == ["committed"])
        for i in 1...4 {
            let host = fleet.name(i)
            #expect(fleet.boots(host) == ["6.1.0-17-hosting", "6.1.0-19-hosting"], "\(host) booted the new kernel once")
            let vars = efiVars(fleet, host)
            let m = try #require(mids[host])
            #expect(vars["LoaderEntryDefault"] == "\(m)-6.1.0-19-hosting.conf", "\(host): committed with bootctl set-default: \(vars)")
            #expect(vars["LoaderEntryOneShot"] == nil, "\(host): no one-shot entry left: \(vars)")
        }
        let id = try #require(doc["id"] as? String)
        let show = try CLI.run(["rollout", "show", id, "--journal", fleet.journal])
        #expect(show.output.contains("systemd-boot"), "\(show.output)")
        // bootctl's own word on every host: the new kernel is the default and the one running.
        let listed = try fleet.stdout("bootctl list --json=short")
        for (host, text) in listed {
            let entries = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]], "\(host): \(text)")
            let chosen = entries.filter { $0["isDefault"] as? Bool == true && $0["isSelected"] as? Bool == true }
            #expect(chosen.count == 1 && chosen.first?["version"] as? String == "6.1.0-19-hosting", "\(host): \(text)")
        }
    }

    @Test func aLeakyKernelHaltsAndTheCanaryIsBackOnTheOldKernelAndDefault() throws {
        let fleet = try Fleet(hosts: 4, racks: 2, slot: 57, flavours: "systemd-boot"); defer { fleet.down() }
        let mids = try fleet.stdout("cat /etc/machine-id")
        let r = try fleet.apply(try fleet.plan(release: "6.1.0-18-hosting", soak: "14s", bootloader: "systemd-boot"))
        #expect(r.status == 3, "\(r.output)")
        #expect(r.output.contains("HALT: wave 1 gate fail: failed on web-001"), "\(r.output)")
        let doc = try fleet.lastRollout()
        #expect(doc["state"] as? String == "rolled_back", "\(r.output)")
        let states = fleet.hostStates(doc)
        #expect(states["web-001"] == "rolled_back")
        #expect(fleet.boots("web-001") == ["6.1.0-17-hosting", "6.1.0-18-hosting", "6.1.0-17-hosting"])
        for i in 2...4 {
            #expect(states[fleet.name(i)] == fleet.untouchedState(doc, fleet.name(i)))
            #expect(fleet.boots(fleet.name(i)) == ["6.1.0-17-hosting"], "\(fleet.name(i)) was changed")
            #expect(efiVars(fleet, fleet.name(i))["LoaderEntryDefault"] == nil, "\(fleet.name(i)) was changed")
        }
        // The canary's default is its old entry again (as journaled at check from bootctl list), no one-shot left.
        let vars = efiVars(fleet, "web-001")
        #expect(vars["LoaderEntryDefault"] == "\(try #require(mids["web-001"]))-6.1.0-17-hosting.conf", "\(vars)")
        #expect(vars["LoaderEntryOneShot"] == nil, "\(vars)")
    }

    /// The install gave the panicking kernel the newest entry, which systemd-boot boots when no
    /// default is saved: only the stage's `bootctl set-default` of the running kernel's entry brings
    /// the host back on the old kernel after the panic's reset. Without it the host would panic at
    /// every reset and never return.
    @Test func aPanickingKernelFallsBackToTheSavedDefault() throws {
        let fleet = try Fleet(hosts: 2, racks: 2, slot: 56, flavours: "systemd-boot"); defer { fleet.down() }
        let r = try fleet.apply(try fleet.plan(release: "6.1.0-20-hosting", rebootTimeout: "40s", bootloader: nil))
        #expect(r.status == 3, "\(r.output)")
        #expect(r.output.contains("booted 6.1.0-17-hosting, expected 6.1.0-20-hosting"), "\(r.output)")
        let states = fleet.hostStates(try fleet.lastRollout())
        #expect(states["web-001"] == "rolled_back")
        #expect(states["web-002"] == "pending")
        #expect(fleet.boots("web-001") == ["6.1.0-17-hosting", "6.1.0-17-hosting"])
        let mid = try #require(try fleet.stdout("cat /etc/machine-id")["web-001"])
        #expect(efiVars(fleet, "web-001")["LoaderEntryDefault"] == "\(mid)-6.1.0-17-hosting.conf")
    }
}
