import Foundation
import Testing
import RolloutTesting
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine

/// The grub driver's pre-check (`GrubSafety`) through `RolloutService` and the real orchestrator
/// over in-process Debian hosts: a host whose boot-once would not be safe fails its check and is
/// never staged nor rebooted (nor leased), while the others roll; recordfail is a warning.
@Suite("grub safety checks over in-process hosts", .serialized) struct GrubSafetyEngineTests {
    @Test(arguments: [Bootloader.grub, .auto]) func unsafeHostsFailTheirCheckAndAreNeverStaged(bootloader: Bootloader) async throws {
        let f = try SimFleet(count: 6, racks: 3, waves: [.count(2), .percent(100)], maxFailedPerWave: 3)
        f.plan.bootloader = bootloader
        await f.hosts["h02"]!.setGrub(default: "0")
        await f.hosts["h04"]!.setGrub(abstraction: "lvm")
        await f.hosts["h05"]!.setGrub(recordfail: true)
        await f.hosts["h06"]!.setGrub(recordfailTimeout: "-1", recordfail: true)
        let service = RolloutService(journal: f.journal, transport: { [hosts = f.hosts] in hosts[$0.name]! })
        let created = try await service.create(LoadedPlan(plan: f.plan, inventory: f.inventory, customers: nil), parallel: 4)
        #expect(try await service.drive(created.orchestrator) == .completed)
        let failed: [String: String] = [
            "h02": "/etc/default/grub sets GRUB_DEFAULT=0, not saved",
            "h04": "/boot/grub is on lvm (grub-probe --target=abstraction): GRUB cannot write grubenv at boot",
            "h06": "grubenv has recordfail=1 (a boot that did not finish) and GRUB_RECORDFAIL_TIMEOUT=-1",
        ]
        for (name, s) in await f.summaries() {
            let sim = f.hosts[name]!
            let h = try #require(try f.journal.host(created.id, name))
            if let why = failed[name] {
                #expect(h.state == .failed && h.lastError?.contains(why) == true, "\(name): \(h)")
                let moves = try f.journal.events(created.id).filter { $0.host == name && $0.kind == .state }.map(\.message)
                #expect(moves.count == 1 && moves.allSatisfy { !$0.contains("checked") && !$0.contains("staged") }, "\(name): \(moves)")
                #expect(s.release == SimFleet.old && s.reboots == 0 && s.saved == nil, "\(name) was touched: \(s)")
                let (next, lease) = (await sim.nextEntry, await sim.leaseText)
                #expect(next == nil && lease == nil, "\(name) was staged or leased")
            } else {
                #expect(h.state == .committed && s.release == SimFleet.new && s.reboots == 1, "\(name): \(s) \(h)")
            }
        }
        #expect(try f.journal.host(created.id, "h02")?.lastError?.contains("set GRUB_DEFAULT=saved in /etc/default/grub and run update-grub") == true)
        #expect(try f.journal.host(created.id, "h04")?.lastError?.contains("use bootloader: custom, or move /boot to a plain partition") == true)
        let warnings = try f.journal.events(created.id).filter { $0.host == "h05" && $0.message.hasPrefix("warning: ") }.map(\.message)
        #expect(warnings == ["warning: grubenv has recordfail=1 (a boot that did not finish): Ubuntu's GRUB will show its menu and wait 30 s (GRUB_RECORDFAIL_TIMEOUT) at the reboot; clear it (grub-editenv /boot/grub/grubenv unset recordfail) once the host is known good"], "\(warnings)")
    }

    /// The budget counts a failed check: with none tolerated, one unsafe host halts the wave
    /// before anything of it is staged.
    @Test func aFailedCheckCountsAgainstTheBudget() async throws {
        let f = try SimFleet(count: 4, racks: 2, waves: [.percent(100)])
        f.plan.bootloader = .grub
        await f.hosts["h03"]!.setGrub(fs: "btrfs")
        let service = RolloutService(journal: f.journal, transport: { [hosts = f.hosts] in hosts[$0.name]! })
        let created = try await service.create(LoadedPlan(plan: f.plan, inventory: f.inventory, customers: nil), parallel: 4)
        guard case .halted = try await service.drive(created.orchestrator) else { Issue.record("not halted"); return }
        #expect(try f.journal.host(created.id, "h03")?.lastError?.contains("/boot/grub is on btrfs (grub-probe --target=fs)") == true)
        for (name, s) in await f.summaries() { #expect(s.reboots == 0 && s.release == SimFleet.old && s.saved == nil, "\(name): \(s)") }
    }
}
