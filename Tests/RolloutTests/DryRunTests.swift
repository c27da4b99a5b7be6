import Foundation
import Testing
@testable import HealthGate
@testable import RolloutConfig
@testable import Engine

@Suite struct DryRunTests {
    func flagship() throws -> LoadedPlan { try PlanLoader.loadChecked(path: repoRoot + "/plans/socket-bind-fix.yaml") }

    @Test func previewOfTheFlagshipWithFacts() throws {
        let l = try flagship()
        let releases = Dictionary(uniqueKeysWithValues: l.inventory.hosts.map { ($0.name, "6.1.0-17-hosting") })
            .merging(["web-024": "6.1.0-19-hosting"]) { $1 }
        let unreachable = ["web-023": "[connect_timeout] no answer in 10s"]
        let layout = WavePlanner.plan(l.plan, inventory: l.inventory, currentRelease: releases, unreachable: unreachable, customers: l.customers)
        var facts = DryRunFacts(offline: false, releases: releases, unreachable: unreachable, exampleGrubConfig: debianGrubCfg,
                                customers: l.customers, maintenanceTemplate: nil)
        facts.hostFacts["web-001"] = HostFacts(release: "6.1.0-17-hosting", uptimeSeconds: 86400,
                                               memory: MemInfo(memTotal: 16 << 30, sUnreclaim: 4 << 30), oomKill: 3)
        facts.bootFree = ["web-001": 20 << 20, "web-002": 1 << 30]
        let p = DryRun.preview(plan: l.plan, inventory: l.inventory, layout: layout, facts: facts)
        #expect(p.plan.targetRelease == "6.1.0-19-hosting" && p.plan.bootloader == "grub")
        #expect(p.inventoryHosts == 26 && p.selectedHosts == 24 && p.hostsToRoll == 22)
        #expect(p.skipped.map(\.host) == ["web-023", "web-024"])
        #expect(p.skipped.map(\.reason) == ["unreachable: [connect_timeout] no answer in 10s", "already on 6.1.0-19-hosting"])
        #expect(p.waves.first?.name == "canary" && p.waves.first?.hostCount == 1)
        let canary = try #require(p.waves.first?.batches.first?.first)
        #expect(canary.name == "web-001" && canary.currentRelease == "6.1.0-17-hosting")
        #expect(canary.bootFreeBytes == 20 << 20)
        #expect(p.notes.contains { $0.hasPrefix("1 host has less than kernel.min_boot_free (128 MiB) free on /boot") && $0.contains("web-001 (20.0 MiB)") })
        #expect(canary.sunreclaimBytes == 4 << 30 && canary.sunreclaimShare == 0.25 && canary.oomKills == 3 && canary.uptimeSeconds == 86400)
        #expect(p.waves.map(\.hostCount).reduce(0, +) == 22)
        #expect(p.waves.last?.doneShare == 1)
        #expect(p.survey.releases == ["6.1.0-17-hosting": 23, "6.1.0-19-hosting": 1])
        // The exact commands, with the entries found in the example host's grub.cfg.
        let steps = Dictionary(uniqueKeysWithValues: p.steps.map { ($0.step, $0.commands) })
        #expect(p.steps.map(\.step) == ["check", "install", "stage", "notify", "reboot", "verify", "gate", "commit", "rollback"])
        #expect(steps["install"] == ["apt-get update", "DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-6.1.0-19-hosting"])
        #expect(steps["stage"] == ["cat /boot/grub/grub.cfg",
                                   "grub-set-default 'Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-17-hosting'",
                                   "grub-reboot 'Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-19-hosting'"])
        #expect(steps["reboot"] == ["systemctl reboot"])
        #expect(steps["commit"] == ["grub-set-default 'Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-19-hosting'"])
        #expect(steps["rollback"] == ["grub-editenv /boot/grub/grubenv unset next_entry",
                                      "grub-set-default 'Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-17-hosting'",
                                      "systemctl reboot"])
        #expect(steps["gate"]?.last == "systemctl is-active --quiet nginx")
        // Gate, notices, estimate.
        #expect(p.gate.samples == 31 && p.gate.sunreclaimGrowthMaxBytesPerHour == 32 << 20)
        #expect(p.gate.testSiteURL == "http://\(l.inventory.hosts.first { $0.name == p.exampleHost }!.address)/")
        let n = try #require(p.notify)
        #expect(n.customersPerWave.count == p.waves.count)
        #expect(n.leadTimeSeconds == 1800)
        let example = try #require(n.example)
        #expect(example.subject.hasPrefix("Planned maintenance: 1 of your servers"))
        #expect(example.body.contains("  - \(p.exampleHost!)"))
        #expect(example.body.contains("Example Hosting"))
        #expect(!example.body.contains("{{"))
        let e = p.estimate
        #expect(e.minimumSeconds < e.typicalSeconds && e.typicalSeconds < e.maximumSeconds)
        // Each wave waits the lead time and the soak at least.
        #expect(e.minimumSeconds >= Double(p.waves.count) * (1800 + 900))
    }

    @Test func jsonIsStableAndComplete() throws {
        let l = try flagship()
        let layout = WavePlanner.plan(l.plan, inventory: l.inventory, currentRelease: [:], unreachable: [:], customers: l.customers)
        let facts = DryRunFacts(offline: true, customers: l.customers)
        let a = DryRun.preview(plan: l.plan, inventory: l.inventory, layout: layout, facts: facts)
        let b = DryRun.preview(plan: l.plan, inventory: l.inventory, layout: layout, facts: facts)
        #expect(a == b)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let data = try enc.encode(a)
        #expect(try enc.encode(b) == data)
        #expect(try JSONDecoder().decode(DryRunPreview.self, from: data) == a)
        #expect(a.notes.first?.hasPrefix("offline") == true)
        #expect(a.steps.first { $0.step == "rollback" }?.commands.contains { $0.contains("<current release>") } == true)
    }

    @Test func hostsBehindABastionAreShownSo() throws {
        let plan = try PlanLoader.parse(text: "name: b\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\n", path: "b.yaml")
        let inv = Inventory(path: "inv.yaml", hosts: [InventoryHost(name: "a", address: "10.0.0.1"), InventoryHost(name: "b", address: "10.0.0.2")])
        let layout = WavePlanner.plan(plan, inventory: inv, currentRelease: [:], unreachable: [:], customers: nil)
        var facts = DryRunFacts(offline: true)
        facts.bastions = ["b": "jump-1 (203.0.113.5:22)"]
        let p = DryRun.preview(plan: plan, inventory: inv, layout: layout, facts: facts)
        let hosts = p.waves.flatMap { $0.batches.flatMap { $0 } }
        #expect(hosts.first { $0.name == "b" }?.via == "jump-1 (203.0.113.5:22)")
        #expect(hosts.first { $0.name == "a" }?.via == nil)
        #expect(p.notes.contains("1 host is reached via bastion jump-1 (203.0.113.5:22) (a direct-tcpip channel of its SSH session; its host key verified too)"), "\(p.notes)")
    }

    @Test func customBootloaderCommandsAreQuotedAndSubstituted() throws {
        var plan = try PlanLoader.parse(text: """
        name: c
        kernel: {release: 6.1.0-19-hosting}
        inventory: inv.yaml
        bootloader: {type: systemd-boot}
        """, path: "c.yaml")
        let inv = Inventory(path: "inv.yaml", hosts: [InventoryHost(name: "a", address: "10.0.0.1")])
        let layout = WavePlanner.plan(plan, inventory: inv, currentRelease: ["a": "6.1.0-17-hosting"], unreachable: [:], customers: nil)
        var steps = DryRun.steps(plan: plan, example: inv.hosts[0], previousRelease: "6.1.0-17-hosting", grubConfig: nil, customers: nil)
        let stage = steps.first { $0.step == "stage" }!.commands
        // Offline: no listing to read the ids from; placeholders that say so (quoted, as every value).
        #expect(stage == ["bootctl list --json=short --no-pager", "bootctl set-default '<entry-token>-6.1.0-17-hosting.conf'", "bootctl set-oneshot '<entry-token>-6.1.0-19-hosting.conf'"])
        #expect(steps.first { $0.step == "rollback" }!.commands == ["bootctl set-oneshot ''", "bootctl set-default '<entry-token>-6.1.0-17-hosting.conf'", "systemctl reboot"])
        #expect(steps.first { $0.step == "check" }!.commands.contains(SystemdBootDriver.isInstalled))
        #expect(DryRun.preview(plan: plan, inventory: inv, layout: layout, facts: DryRunFacts(offline: false)).plan.bootloader == "systemd-boot")
        // A release that needs quoting (validation forbids it; quoting still holds).
        plan.kernel.release = "6.1 x'y"
        steps = DryRun.steps(plan: plan, example: nil, previousRelease: nil, grubConfig: nil, customers: nil)
        #expect(steps.first { $0.step == "install" }!.commands == ["DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-'6.1 x'\\''y'"])
    }

    @Test func grubBLSPreviewShowsDnfTheEntryIDsAndTheUpdateDefaultNote() throws {
        let plan = try PlanLoader.parse(text: """
        name: r
        kernel: {release: 5.14.0-427.13.1.el9_4.x86_64}
        inventory: inv.yaml
        bootloader: grub-bls
        """, path: "r.yaml")
        let inv = Inventory(path: "inv.yaml", hosts: [InventoryHost(name: "a", address: "10.0.0.1")])
        let mid = "4b1a7c0e9d2f4e6a8c3b5d7f9e1a2c4b"
        let old = "5.14.0-362.24.1.el9_3.x86_64"
        // The listing read from the example host, which does not have the new kernel yet: its id is modelled on the old one.
        let listing = rhel9GrubbyInfo.replacingOccurrences(of: "5.14.0-427.13.1.el9_4.x86_64", with: "5.14.0-300.el9.x86_64")
        let steps = DryRun.steps(plan: plan, example: inv.hosts[0], previousRelease: old, grubConfig: listing, customers: nil)
        func commands(_ step: String) -> [String] { steps.first { $0.step == step }?.commands ?? [] }
        #expect(commands("install") == ["dnf install -y kernel-5.14.0-427.13.1.el9_4.x86_64"])
        #expect(commands("stage") == ["grubby --info=ALL", "grub2-set-default \(mid)-\(old)", "grub2-reboot \(mid)-5.14.0-427.13.1.el9_4.x86_64"])
        #expect(commands("commit") == ["grubby --set-default /boot/vmlinuz-5.14.0-427.13.1.el9_4.x86_64"])
        #expect(commands("rollback") == ["grub2-editenv - unset next_entry", "grubby --set-default /boot/vmlinuz-\(old)", "systemctl reboot"])
        let layout = WavePlanner.plan(plan, inventory: inv, currentRelease: ["a": old], unreachable: [:], customers: nil)
        let preview = DryRun.preview(plan: plan, inventory: inv, layout: layout, facts: DryRunFacts(offline: false))
        #expect(preview.plan.bootloader == "grub-bls")
        #expect(preview.notes.contains { $0.hasPrefix("grub-bls: with UPDATEDEFAULT=yes") }, "\(preview.notes)")
    }

    @Test func surveyOutputParses() {
        let out = """
        @@rollctl-file /proc/sys/kernel/osrelease
        6.1.0-17-hosting
        @@rollctl-file /proc/sys/kernel/random/boot_id
        0d6f1c7e-1b9e-4c1e-9a51-2f0e7c1d9b10
        @@rollctl-file /proc/uptime
        4242.5 8000.1
        @@rollctl-file /proc/meminfo
        MemTotal:       16384000 kB
        SUnreclaim:      2048000 kB
        @@rollctl-file /proc/vmstat
        oom_kill 2
        @@rollctl-file boot-free
        351272960

        """
        let (facts, free) = PlanSurvey.parse(out)
        #expect(facts.release == "6.1.0-17-hosting" && facts.oomKill == 2 && facts.memory.sUnreclaim == 2048000 * 1024)
        #expect(free == 351272960)
        #expect(PlanSurvey.parse(out.replacingOccurrences(of: "351272960", with: "df: /boot: No such file or directory")).bootFreeBytes == nil)
        #expect(PlanSurvey.command.hasPrefix(HostFacts.command))
    }
}
