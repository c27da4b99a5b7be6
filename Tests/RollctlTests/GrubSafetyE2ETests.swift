import Foundation
import Testing
import SSHTesting
#if canImport(Glibc)
import Glibc
#endif

/// End-to-end: the grub driver's pre-check on a fleetsim fleet of Debian hosts, one with /boot on
/// LVM (`grub-probe`), one with `GRUB_DEFAULT=0` and one with Ubuntu's `recordfail=1` left in
/// grubenv. The dry-run names each; the rollout fails the first two at their check (never booted,
/// never staged: fleetsim's boots.log and grubenv say so) and rolls the others, the recordfail
/// host with a warning in the output and the journal. Needs root.
@Suite("grub safety checks on a fleetsim fleet", .serialized, .enabled(if: geteuid() == 0))
struct GrubSafetyE2ETests {
    typealias Fleet = RolloutE2ETests.Fleet

    @Test func unsafeHostsFailTheirCheckAndTheOthersRoll() throws {
        let fleet = try Fleet(hosts: 5, racks: 2, slot: 55); defer { fleet.down() }
        try fleet.set("web-002", "boot_abstraction=lvm")
        try fleet.set("web-004", "grub_default=0")
        try fleet.set("web-003", "recordfail=true")
        let path = try fleet.plan(release: "6.1.0-19-hosting", waves: "[1, 100%]")
        let text = try String(contentsOfFile: path, encoding: .utf8)
            .replacingOccurrences(of: "  rollback: wave", with: "  rollback: wave\n  max_failed_hosts_per_wave: 2\n  max_failed_hosts: 2")
        try text.write(toFile: path, atomically: true, encoding: .utf8)

        let lvm = "web-002: its check step will fail: /boot/grub is on lvm (grub-probe --target=abstraction): GRUB cannot write grubenv at boot"
        let notSaved = "web-004: its check step will fail: /etc/default/grub sets GRUB_DEFAULT=0, not saved"
        let recordfail = "web-003: warning: grubenv has recordfail=1 (a boot that did not finish): Ubuntu's GRUB will show its menu and wait 30 s"
        let dry = try fleet.apply(path, ["--dry-run"])
        #expect(dry.status == 0, "\(dry.output)")
        for line in [lvm, notSaved, recordfail] { #expect(dry.output.contains(line), "dry-run lacks '\(line)':\n\(dry.output)") }
        for host in ["web-001", "web-005"] {
            #expect(!dry.output.contains("\(host): its check step") && !dry.output.contains("\(host): warning"), "\(dry.output)")
        }
        let json = try fleet.apply(path, ["--dry-run", "--json"])
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any], "\(json.output)")
        let refs = (doc["waves"] as? [[String: Any]] ?? []).flatMap { ($0["batches"] as? [[[String: Any]]] ?? []).flatMap { $0 } }
        let severities = Dictionary(uniqueKeysWithValues: refs.map { r in
            (r["name"] as! String, ((r["bootloader_findings"] as? [[String: Any]]) ?? []).map { $0["severity"] as? String ?? "?" })
        })
        #expect(severities == ["web-001": [], "web-002": ["error"], "web-003": ["warning"], "web-004": ["error"], "web-005": []], "\(severities)")

        let r = try fleet.apply(path)
        #expect(r.status == 0, "\(r.output)")
        // Completed, and it says on how many hosts: two failed their check within the budget.
        #expect(r.output.contains("completed: 3 of 5 hosts committed to 6.1.0-19-hosting; 2 failed within the failure budget (web-002, web-004)"), "\(r.output)")
        #expect(r.output.contains("warning: grubenv has recordfail=1"), "\(r.output)")
        let show = try fleet.lastRollout()
        #expect(show["state"] as? String == "completed", "\(r.output)")
        #expect(fleet.hostStates(show) == ["web-001": "committed", "web-002": "failed", "web-003": "committed", "web-004": "failed", "web-005": "committed"],
                "\(r.output)")
        // fleetsim's own record: the unsafe hosts never rebooted, and nothing was staged on them.
        for host in ["web-002", "web-004"] {
            #expect(fleet.boots(host) == ["6.1.0-17-hosting"], "\(host)")
            let env = try String(contentsOfFile: fleet.dir + "/fleet/hosts/\(host)/boot/grub/grubenv", encoding: .utf8)
            #expect(!env.contains("next_entry=") && env.contains("saved_entry=Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-17-hosting"), "\(host): \(env)")
        }
        for host in ["web-001", "web-003", "web-005"] {
            #expect(fleet.boots(host) == ["6.1.0-17-hosting", "6.1.0-19-hosting"], "\(host)")
        }
        // The journal: each failure's reason names the file or setting and what to do; the warning is an event.
        let id = try #require(show["id"] as? String)
        let journal = try CLI.run(["rollout", "show", id, "--journal", fleet.journal, "--events"])
        for text in ["/boot/grub is on lvm (grub-probe --target=abstraction)", "use bootloader: custom, or move /boot to a plain partition",
                     "/etc/default/grub sets GRUB_DEFAULT=0, not saved", "set GRUB_DEFAULT=saved in /etc/default/grub and run update-grub",
                     "warning: grubenv has recordfail=1"] {
            #expect(journal.output.contains(text), "the journal lacks '\(text)':\n\(journal.output)")
        }
    }
}
