import Foundation
import Testing
import SSHTesting
#if canImport(Glibc)
import Glibc
#endif

/// End-to-end: `bootloader: auto` on a mixed fleetsim fleet (Debian 12 hosts with grub.cfg and
/// apt, RHEL 9 hosts with BLS entries, grubby and dnf), rolled by one plan: the survey tells each
/// host's bootloader from its files, the journal keeps it, and every step uses it (a later
/// `rollout rollback` in another process too). Needs root.
@Suite("bootloader auto on a mixed fleetsim fleet", .serialized, .enabled(if: geteuid() == 0))
struct AutoBootloaderE2ETests {
    typealias Fleet = RolloutE2ETests.Fleet

    /// Each host's bootloader as `rollout show --json` tells it.
    func journaled(_ doc: [String: Any]) -> [String: String] {
        var out: [String: String] = [:]
        for h in doc["hosts"] as? [[String: Any]] ?? [] { out[h["name"] as! String] = h["bootloader"] as? String }
        return out
    }

    static let debianSaved = "saved_entry=Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux "

    @Test func aMixedFleetIsRolledByOnePlanEachHostWithItsOwnDriver() throws {
        let fleet = try Fleet(hosts: 5, racks: 2, slot: 53, flavours: "debian:2,rhel:3"); defer { fleet.down() }
        // No `bootloader` key: auto.
        let plan = try fleet.plan(release: "6.1.0-19-hosting", waves: "[1, 100%]", bootloader: nil)
        let expected = ["web-001": "grub", "web-002": "grub", "web-003": "grub-bls", "web-004": "grub-bls", "web-005": "grub-bls"]

        // A host whose files do not tell: refused (exit 2), naming it and what was found; nothing journaled or touched.
        _ = try fleet.stdout("mv /boot/grub/grub.cfg /boot/grub/grub.cfg.away 2>/dev/null; true")
        let refused = try fleet.apply(plan)
        #expect(refused.status == 2, "\(refused.output)")
        for host in ["web-001", "web-002"] {
            #expect(refused.output.contains("bootloader auto: host \(host): cannot tell its bootloader (ID=debian; found "), "\(refused.output)")
        }
        #expect(!refused.output.contains("host web-003"), "\(refused.output)")
        #expect(try CLI.run(["rollout", "list", "--journal", fleet.journal, "--json"]).json.isEmpty)
        _ = try fleet.stdout("mv /boot/grub/grub.cfg.away /boot/grub/grub.cfg 2>/dev/null; true")

        // fleet facts shows what auto would pick per host, and the distribution it read.
        let facts = try CLI.run(["fleet", "facts", "-i", fleet.dir + "/fleet/inventory.yaml", "--json"])
        let factsHosts = facts.json.filter { $0["type"] as? String == "host" }
        #expect(Dictionary(uniqueKeysWithValues: factsHosts.map { ($0["name"] as! String, $0["bootloader"] as? String ?? "-") }) == expected, "\(facts.output)")
        #expect(Set(factsHosts.compactMap { $0["os_id"] as? String }) == ["debian", "rhel"], "\(facts.output)")
        let factsText = try CLI.run(["fleet", "facts", "-i", fleet.dir + "/fleet/inventory.yaml"])
        #expect(factsText.lines.first?.contains("BOOTLOADER") == true, "\(factsText.output)")
        #expect(factsText.lines.contains { $0.hasPrefix("web-003 ") && $0.contains(" grub-bls ") }, "\(factsText.output)")

        // The dry-run: each host's driver, grouped; in --json per host; offline, decided at the survey.
        let dry = try fleet.apply(plan, ["--dry-run"])
        #expect(dry.status == 0, "\(dry.output)")
        #expect(dry.output.contains("bootloader auto: grub-bls on 3 hosts (web-003, web-004, web-005), grub on 2 (web-001, web-002)"), "\(dry.output)")
        // The canary's (Debian's) steps, and where the RHEL hosts' differ, with web-003's own entry ids.
        let mid3 = try #require(try fleet.stdout("cat /etc/machine-id")["web-003"])
        for text in ["Steps for web-001 (example, bootloader grub)", "$ DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-6.1.0-19-hosting",
                     "$ grub-reboot 'Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-19-hosting'",
                     "Steps for web-003 (example, bootloader grub-bls) where they differ", "$ dnf install -y kernel-6.1.0-19-hosting",
                     "$ grub2-set-default \(mid3)-6.1.0-17-hosting", "$ grub2-reboot \(mid3)-6.1.0-19-hosting",
                     "$ grubby --set-default /boot/vmlinuz-6.1.0-19-hosting"] {
            #expect(dry.output.contains(text), "dry-run lacks '\(text)':\n\(dry.output)")
        }
        let json = try fleet.apply(plan, ["--dry-run", "--json"])
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any], "\(json.output)")
        let refs = (doc["waves"] as? [[String: Any]] ?? []).flatMap { ($0["batches"] as? [[[String: Any]]] ?? []).flatMap { $0 } }
        #expect(Dictionary(uniqueKeysWithValues: refs.map { ($0["name"] as! String, $0["bootloader"] as? String ?? "-") }) == expected)
        #expect((doc["plan"] as? [String: Any])?["bootloader"] as? String == "auto")
        let offline = try fleet.apply(plan, ["--dry-run", "--offline"])
        #expect(offline.status == 0 && offline.output.contains("bootloader auto: decided per host at the survey"), "\(offline.output)")

        let r = try fleet.apply(plan)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("completed: every host committed to 6.1.0-19-hosting"), "\(r.output)")
        let show = try fleet.lastRollout()
        #expect(show["state"] as? String == "completed")
        #expect(Set(fleet.hostStates(show).values) == ["committed"])
        #expect(journaled(show) == expected)
        for i in 1...5 {
            #expect(fleet.boots(fleet.name(i)) == ["6.1.0-17-hosting", "6.1.0-19-hosting"], "\(fleet.name(i)) booted the new kernel once")
        }
        // Committed with each driver's own commands: grub-set-default by title path on Debian,
        // grubby --set-default on RHEL (after dnf installed the kernel).
        let grubenv = try fleet.stdout("grub-editenv list")
        let grubby = try fleet.stdout("grubby --default-kernel")
        let rpm = try fleet.stdout("rpm -q kernel")
        for host in ["web-001", "web-002"] {
            #expect(grubenv[host]?.contains(Self.debianSaved + "6.1.0-19-hosting") == true, "\(host): \(grubenv[host] ?? "-")")
        }
        for host in ["web-003", "web-004", "web-005"] {
            #expect(grubby[host] == "/boot/vmlinuz-6.1.0-19-hosting", "\(host): \(grubby)")
            #expect(rpm[host]?.contains("kernel-6.1.0-19-hosting") == true, "\(host): \(rpm)")
        }
        let id = try #require(show["id"] as? String)
        let text = try CLI.run(["rollout", "show", id, "--journal", fleet.journal])
        #expect(text.output.contains("bootloader: grub-bls on 3 hosts (web-003, web-004, web-005), grub on 2 (web-001, web-002)"), "\(text.output)")

        // Another process (the plan read back from the journal: auto again) reverts every host with
        // the driver journaled for it, nothing detected anew: with the plan's (grub) the RHEL hosts would fail.
        let back = try CLI.run(["rollout", "rollback", id, "--all", "--yes", "--journal", fleet.journal])
        #expect(back.status == 0, "\(back.output)")
        #expect(Set(fleet.hostStates(try fleet.lastRollout()).values) == ["rolled_back"], "\(back.output)")
        for i in 1...5 {
            #expect(fleet.boots(fleet.name(i)) == ["6.1.0-17-hosting", "6.1.0-19-hosting", "6.1.0-17-hosting"], "\(fleet.name(i))")
        }
        let grubenvBack = try fleet.stdout("grub-editenv list")
        let grubbyBack = try fleet.stdout("grubby --default-kernel")
        for host in ["web-001", "web-002"] {
            #expect(grubenvBack[host]?.contains(Self.debianSaved + "6.1.0-17-hosting") == true, "\(host): \(grubenvBack[host] ?? "-")")
        }
        for host in ["web-003", "web-004", "web-005"] {
            #expect(grubbyBack[host] == "/boot/vmlinuz-6.1.0-17-hosting", "\(host): \(grubbyBack)")
        }
    }

    @Test func aLeakyKernelHaltsAndEachHostIsRolledBackWithItsOwnDriver() throws {
        let fleet = try Fleet(hosts: 4, racks: 2, slot: 54, flavours: "debian:2,rhel:2"); defer { fleet.down() }
        let r = try fleet.apply(try fleet.plan(release: "6.1.0-18-hosting", waves: "[100%]", soak: "14s", bootloader: "auto"))
        #expect(r.status == 3, "\(r.output)")
        #expect(r.output.contains("HALT: wave 1 gate fail"), "\(r.output)")
        let doc = try fleet.lastRollout()
        #expect(doc["state"] as? String == "rolled_back", "\(r.output)")
        #expect(journaled(doc) == ["web-001": "grub", "web-002": "grub", "web-003": "grub-bls", "web-004": "grub-bls"])
        let states = fleet.hostStates(doc)
        for i in 1...4 {
            #expect(states[fleet.name(i)] == "rolled_back", "\(fleet.name(i)): \(states)")
            #expect(fleet.boots(fleet.name(i)) == ["6.1.0-17-hosting", "6.1.0-18-hosting", "6.1.0-17-hosting"], "\(fleet.name(i))")
        }
        // Each back on its old saved default, by its own driver, and no one-shot entry left.
        let grubenv = try fleet.stdout("grub-editenv list")
        for host in ["web-001", "web-002"] {
            #expect(grubenv[host]?.contains(Self.debianSaved + "6.1.0-17-hosting") == true, "\(host): \(grubenv[host] ?? "-")")
            #expect(grubenv[host]?.contains("next_entry=Advanced") == false, "\(host): \(grubenv[host] ?? "-")")
        }
        let grubby = try fleet.stdout("grubby --default-kernel")
        let next = try fleet.stdout("grub2-editenv - list | grep ^next_entry= || true")
        for host in ["web-003", "web-004"] {
            #expect(grubby[host] == "/boot/vmlinuz-6.1.0-17-hosting", "\(host): \(grubby)")
            #expect(["", "next_entry="].contains(next[host] ?? "?"), "\(host): \(next)")
        }
    }
}
