import Foundation
import Testing
import SSHTesting
#if canImport(Glibc)
import Glibc
#endif

/// End-to-end: `bootloader: auto` on a fleet of fleetsim's Ubuntu 24.04 hosts (os-release
/// `ID=ubuntu`, Ubuntu's grub.cfg titles and `recordfail`, apt): the survey tells `grub`, the
/// steps name Ubuntu's entries (`Advanced options for Ubuntu>Ubuntu, with Linux R`), every
/// host boots the new kernel once and is committed to it; a host left with `recordfail=1` is
/// rolled with the preflight's warning shown and journaled, GRUB waits its recordfail timeout
/// at that reboot, and the finished boot clears the flag. Needs root.
@Suite("bootloader auto on fleetsim ubuntu hosts", .serialized, .enabled(if: geteuid() == 0))
struct UbuntuE2ETests {
    typealias Fleet = RolloutE2ETests.Fleet

    static let scenario = """
    mem_total: 16GiB
    initial_kernel: 6.8.0-45-generic
    defaults:
      boot_delay: 1s
      boot_jitter: 0.3s
      panic_delay: 2s
      sunreclaim_noise: 1MiB
      site: ok
    kernels:
      6.8.0-45-generic:
        sunreclaim_base: 300MiB
      6.8.0-49-generic:
        sunreclaim_base: 250MiB
        sunreclaim_growth_per_min: 0
    """

    static func title(_ release: String) -> String { "Advanced options for Ubuntu>Ubuntu, with Linux \(release)" }

    func grubenv(_ fleet: Fleet, _ host: String) -> String {
        (try? String(contentsOfFile: fleet.dir + "/fleet/hosts/\(host)/boot/grub/grubenv", encoding: .utf8)) ?? ""
    }

    @Test func anUbuntuFleetRollsWithAutoAndARecordfailHostIsWarnedAbout() throws {
        let fleet = try Fleet(hosts: 3, racks: 2, slot: 58, scenario: Self.scenario, flavours: "ubuntu"); defer { fleet.down() }
        // web-002: a boot that did not finish left recordfail=1; its admin set a 4 s recordfail timeout.
        try fleet.set("web-002", "recordfail=true", "grub_recordfail_timeout=4")
        let plan = try fleet.plan(release: "6.8.0-49-generic", waves: "[1, 100%]", bootloader: nil)

        let warning = "web-002: warning: grubenv has recordfail=1 (a boot that did not finish): Ubuntu's GRUB will show its menu and wait 4 s (GRUB_RECORDFAIL_TIMEOUT) at the reboot"
        let dry = try fleet.apply(plan, ["--dry-run"])
        #expect(dry.status == 0, "\(dry.output)")
        for text in ["bootloader auto: grub on 3 hosts (web-001, web-002, web-003)",
                     "$ DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-6.8.0-49-generic",
                     "$ grub-set-default '\(Self.title("6.8.0-45-generic"))'", "$ grub-reboot '\(Self.title("6.8.0-49-generic"))'", warning] {
            #expect(dry.output.contains(text), "dry-run lacks '\(text)':\n\(dry.output)")
        }
        #expect(!dry.output.contains("Debian GNU/Linux"), "\(dry.output)")
        for host in ["web-001", "web-003"] { #expect(!dry.output.contains("\(host): warning"), "\(dry.output)") }

        let r = try fleet.apply(plan)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("completed: every host committed to 6.8.0-49-generic"), "\(r.output)")
        #expect(r.output.contains("warning: grubenv has recordfail=1"), "\(r.output)")
        let show = try fleet.lastRollout()
        #expect(show["state"] as? String == "completed")
        #expect(fleet.hostStates(show) == ["web-001": "committed", "web-002": "committed", "web-003": "committed"], "\(r.output)")
        let drivers = Dictionary(uniqueKeysWithValues: (show["hosts"] as? [[String: Any]] ?? []).map { ($0["name"] as! String, $0["bootloader"] as? String ?? "-") })
        #expect(drivers == ["web-001": "grub", "web-002": "grub", "web-003": "grub"], "\(drivers)")
        // fleetsim's own record: each host booted the new kernel once, and its saved default is
        // Ubuntu's title path of it; no one-shot entry left, no recordfail left (the finished boot cleared web-002's).
        for host in ["web-001", "web-002", "web-003"] {
            #expect(fleet.boots(host) == ["6.8.0-45-generic", "6.8.0-49-generic"], "\(host)")
            let env = grubenv(fleet, host)
            #expect(env.contains("saved_entry=\(Self.title("6.8.0-49-generic"))\n") && !env.contains("next_entry=A") && !env.contains("recordfail="), "\(host): \(env)")
        }
        // GRUB waited at its menu at web-002's reboot, as the warning said it would.
        #expect(fleet.log("fleet/supervisor.log").contains("web-002: GRUB shows its menu for 4s (recordfail=1)"), "\(fleet.log("fleet/supervisor.log"))")
        #expect(!fleet.log("fleet/supervisor.log").contains("web-001: GRUB shows its menu"))
        // The journal keeps the warning.
        let id = try #require(show["id"] as? String)
        let journal = try CLI.run(["rollout", "show", id, "--journal", fleet.journal, "--events"])
        #expect(journal.output.contains("warning: grubenv has recordfail=1 (a boot that did not finish)"), "\(journal.output)")
    }
}
