import Foundation
import Testing
import RolloutTesting
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine

/// `bootloader: grub-bls` through the real orchestrator over in-process RHEL hosts, whose dnf
/// makes every installed kernel the saved default (UPDATEDEFAULT=yes).
@Suite("grub-bls over in-process rhel hosts", .serialized) struct GrubBLSEngineTests {
    @Test func everyHostBootsTheNewEntryOnceAndItsIDBecomesTheDefault() async throws {
        let f = try SimFleet(count: 6, racks: 3, flavour: .rhel)
        let id = try f.create()
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        #expect(try await o.run() == .completed)
        for (name, s) in await f.summaries() {
            let mid = f.hosts[name]!.machineID
            #expect(s.release == SimFleet.new && s.reboots == 1 && s.saved == "\(mid)-\(SimFleet.new)", "\(name): \(s)")
            let h = try #require(try f.journal.host(id, name))
            #expect(h.bootEntryBefore == "\(mid)-\(SimFleet.old)" && h.bootEntryAfter == "\(mid)-\(SimFleet.new)", "\(h)")
        }
    }

    /// The install made the new, hanging kernel the default; the stage pinned the old one back,
    /// so a power cycle after the failed rollback brings the host up on the old kernel.
    @Test func aHungHostComesBackOnThePinnedOldKernelAfterAPowerCycle() async throws {
        let f = try SimFleet(count: 3, racks: 3, flavour: .rhel)
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
        #expect(await f.hosts[hung]!.summary().saved == "\(mid)-\(SimFleet.old)", "the stage's pin, not dnf's UPDATEDEFAULT")
        await f.hosts[hung]!.powerCycle()
        #expect(await f.hosts[hung]!.summary().release == SimFleet.old)
        try await o.rollback(try o.rollbackTargets(.failed).map(\.name))
        #expect(try f.journal.host(id, hung)?.state == .rolledBack)
    }
}
