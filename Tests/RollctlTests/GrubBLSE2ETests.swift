import Foundation
import Testing
import SSHTesting
#if canImport(Glibc)
import Glibc
#endif

/// End-to-end: `bootloader: grub-bls` on fleetsim's RHEL 9 hosts (BLS entries, grubby, dnf with
/// UPDATEDEFAULT=yes, GRUB following grubenv by entry id). Needs root; skipped otherwise.
@Suite("grub-bls rollouts on fleetsim rhel hosts", .serialized, .enabled(if: geteuid() == 0))
struct GrubBLSE2ETests {
    typealias Fleet = RolloutE2ETests.Fleet

    @Test func everyRHELHostBootsTheNewKernelOnceAndItBecomesTheSavedDefault() throws {
        let fleet = try Fleet(hosts: 4, racks: 2, slot: 50, flavours: "rhel"); defer { fleet.down() }
        let plan = try fleet.plan(release: "6.1.0-19-hosting", waves: "[1, 100%]", bootloader: "grub-bls")
        let dry = try fleet.apply(plan, ["--dry-run"])
        #expect(dry.status == 0, "\(dry.output)")
        // The preview reads the example host's entries: the new kernel's id is modelled on the running one's.
        let mids = Set(try fleet.stdout("cat /etc/machine-id").values)
        #expect(mids.count == 4, "every host has its own machine id: \(mids)")
        let mid = try #require(mids.first { dry.output.contains("grub2-reboot \($0)-6.1.0-19-hosting") }, "\(dry.output)")
        for text in ["dnf install -y kernel-6.1.0-19-hosting", "grubby --info=ALL", "grub2-set-default \(mid)-6.1.0-17-hosting",
                     "grub2-reboot \(mid)-6.1.0-19-hosting", "grubby --set-default /boot/vmlinuz-6.1.0-19-hosting",
                     "grub2-editenv - unset next_entry", "UPDATEDEFAULT=yes"] {
            #expect(dry.output.contains(text), "dry-run lacks '\(text)':\n\(dry.output)")
        }
        let r = try fleet.apply(plan)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("completed: every host committed to 6.1.0-19-hosting"), "\(r.output)")
        let doc = try fleet.lastRollout()
        #expect(doc["state"] as? String == "completed")
        #expect(Set(fleet.hostStates(doc).values) == ["committed"])
        for i in 1...4 {
            #expect(fleet.boots(fleet.name(i)) == ["6.1.0-17-hosting", "6.1.0-19-hosting"], "\(fleet.name(i))")
        }
        // Committed: grubby's saved default is the new kernel on every host, and dnf installed it.
        let defaults = try fleet.stdout("grubby --default-kernel")
        #expect(defaults.count == 4 && Set(defaults.values) == ["/boot/vmlinuz-6.1.0-19-hosting"], "\(defaults)")
        let next = try fleet.stdout("grub2-editenv - list | grep ^next_entry= || true")
        #expect(Set(next.values).isSubset(of: ["", "next_entry="]), "no one-shot entry left: \(next)")
        #expect(Set(try fleet.stdout("rpm -q kernel").values) == ["kernel-6.1.0-17-hosting.x86_64\nkernel-6.1.0-19-hosting.x86_64"])
    }

    @Test func aLeakyKernelHaltsAndTheCanaryIsBackOnTheOldKernelAndDefault() throws {
        let fleet = try Fleet(hosts: 4, racks: 2, slot: 51, flavours: "rhel"); defer { fleet.down() }
        let r = try fleet.apply(try fleet.plan(release: "6.1.0-18-hosting", soak: "14s", bootloader: "grub-bls"))
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
        }
        let defaults = try fleet.stdout("grubby --default-kernel")
        #expect(defaults["web-001"] == "/boot/vmlinuz-6.1.0-17-hosting", "the canary's default is the old kernel again: \(defaults)")
        #expect(defaults["web-002"] == "/boot/vmlinuz-6.1.0-17-hosting")
    }

    /// The install made the panicking kernel the saved default (UPDATEDEFAULT=yes): only the stage's
    /// pin brings the host back on the old kernel after the panic's reset. Without it the host
    /// would panic at every reset and never return.
    @Test func aPanickingKernelFallsBackToThePinnedDefaultDespiteUpdateDefault() throws {
        let fleet = try Fleet(hosts: 2, racks: 2, slot: 52, flavours: "rhel"); defer { fleet.down() }
        let r = try fleet.apply(try fleet.plan(release: "6.1.0-20-hosting", rebootTimeout: "40s", bootloader: "grub-bls"))
        #expect(r.status == 3, "\(r.output)")
        #expect(r.output.contains("booted 6.1.0-17-hosting, expected 6.1.0-20-hosting"), "\(r.output)")
        let states = fleet.hostStates(try fleet.lastRollout())
        #expect(states["web-001"] == "rolled_back")
        #expect(states["web-002"] == "pending")
        #expect(fleet.boots("web-001") == ["6.1.0-17-hosting", "6.1.0-17-hosting"])
        #expect(try fleet.stdout("grubby --default-kernel")["web-001"] == "/boot/vmlinuz-6.1.0-17-hosting")
    }
}
