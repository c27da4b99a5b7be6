import Foundation
import Testing
import RolloutTesting
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine

/// systemd-boot through the real orchestrator over in-process systemd-boot hosts, which boot the
/// newest kernel when no default is saved (as systemd-boot boots the entry that sorts first).
@Suite("systemd-boot over in-process systemd-boot hosts", .serialized) struct SystemdBootEngineTests {
    @Test func autoPicksSystemdBootAndEveryHostBootsTheNewEntryOnceAndItsIDBecomesTheDefault() async throws {
        let f = try SimFleet(count: 4, racks: 2, flavour: .systemdBoot)
        f.plan.bootloader = .auto
        let service = RolloutService(journal: f.journal, transport: { [hosts = f.hosts] in hosts[$0.name]! })
        let created = try await service.create(LoadedPlan(plan: f.plan, inventory: f.inventory, customers: nil), parallel: 4)
        #expect(try await service.drive(created.orchestrator) == .completed)
        for (name, s) in await f.summaries() {
            let mid = f.hosts[name]!.machineID
            let h = try #require(try f.journal.host(created.id, name))
            #expect(h.bootloader == "systemd-boot", "\(name)")
            #expect(s.release == SimFleet.new && s.reboots == 1 && s.saved == "\(mid)-\(SimFleet.new).conf", "\(name): \(s)")
            #expect(h.bootEntryBefore == "\(mid)-\(SimFleet.old).conf" && h.bootEntryAfter == "\(mid)-\(SimFleet.new).conf", "\(h)")
        }
    }

    /// With no default saved the new, hanging kernel is the newest entry, which systemd-boot
    /// would boot at every reset; the stage saved the old one as the default, so a power cycle
    /// after the failed rollback brings the host up on the old kernel.
    @Test func aHungHostComesBackOnTheSavedOldKernelAfterAPowerCycle() async throws {
        let f = try SimFleet(count: 3, racks: 3, flavour: .systemdBoot)
        f.plan.bootloader = .systemdBoot
        f.plan.reboot = RebootSpec(timeout: .seconds(1), settle: .zero)
        let id = try f.create()
        let hung = try #require(try f.journal.hosts(id, wave: 2).first?.name)
        await f.hosts[hung]!.setHangsOn(SimFleet.new)
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        guard case .halted = try await o.run() else { Issue.record("not halted"); return }
        try await o.rollbackAfterHalt()
        #expect(try f.journal.host(id, hung)?.state == .rollbackFailed)
        let mid = f.hosts[hung]!.machineID
        #expect(await f.hosts[hung]!.summary().saved == "\(mid)-\(SimFleet.old).conf", "the stage's saved default")
        await f.hosts[hung]!.powerCycle()
        #expect(await f.hosts[hung]!.summary().release == SimFleet.old)
        try await o.rollback(try o.rollbackTargets(.failed).map(\.name))
        #expect(try f.journal.host(id, hung)?.state == .rolledBack)
    }
}
