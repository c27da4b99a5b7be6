import Foundation
import Testing
import HealthGate
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine

/// `bootloader: auto`: telling a host's bootloader from the survey's section (os-release's ID
/// and ID_LIKE as `grep` prints them from each distribution's real file, and the boot files
/// found), choosing each host's driver, and the driver a journaled host row names.
@Suite struct BootloaderDetectionTests {
    /// The survey's output up to the section, then the section as `BootloaderDetection.command` prints it.
    static func survey(_ section: String) -> String {
        "@@rollctl-file /proc/sys/kernel/osrelease\n6.1.0-17-hosting\n@@rollctl-file boot-free\n351272960\n@@rollctl-file bootloader\n" + section
    }

    static func detect(_ section: String) -> BootloaderDetection { BootloaderDetection.parse(survey(section)) }

    // os-release's ID and ID_LIKE lines as each distribution ships them.
    static let debian12 = "ID=debian\n"
    static let ubuntu2204 = "ID=ubuntu\nID_LIKE=debian\n"
    static let rhel9 = "ID=\"rhel\"\nID_LIKE=\"fedora\"\n"
    static let rocky9 = "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n"
    static let alma9 = "ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\n"
    static let fedora40 = "ID=fedora\n"
    static let blsFiles = "found /boot/grub2/grub.cfg\nfound /boot/loader/entries/*.conf\nfound grubby\nfound bootctl\n"

    @Test(arguments: [("debian12", debian12 + "found /boot/grub/grub.cfg\nfound bootctl\n", "grub"),
                      ("ubuntu2204", ubuntu2204 + "found /boot/grub/grub.cfg\nfound /boot/efi/EFI/*/grub.cfg\nfound bootctl\n", "grub"),
                      ("rhel9", rhel9 + blsFiles, "grub-bls"),
                      ("rocky9", rocky9 + blsFiles, "grub-bls"),
                      ("alma9", alma9 + blsFiles, "grub-bls"),
                      // RHEL 8 on UEFI: the only grub.cfg is the ESP's.
                      ("rhel8-uefi", rhel9 + "found /boot/efi/EFI/*/grub.cfg\nfound /boot/loader/entries/*.conf\nfound grubby\n", "grub-bls"),
                      ("fedora40", fedora40 + blsFiles, "grub-bls"),
                      // Fedora installed with systemd-boot: BLS entries and grubby, but no GRUB config.
                      ("fedora40-sdboot", fedora40 + "found /boot/loader/entries/*.conf\nfound /efi/loader/entries\nfound grubby\nfound bootctl\n", "systemd-boot"),
                      ("debian12-sdboot", debian12 + "found /boot/efi/loader/entries\nfound bootctl\n", "systemd-boot")])
    func eachDistributionsFilesTellItsDriver(name: String, section: String, driver: String) {
        #expect(Self.detect(section).driverName == driver, "\(name): \(Self.detect(section))")
    }

    @Test func distributionFamilyIsReadFromIDAndIDLike() {
        #expect(Self.detect(Self.ubuntu2204) == BootloaderDetection(id: "ubuntu", idLike: ["debian"]))
        #expect(Self.detect(Self.rocky9) == BootloaderDetection(id: "rocky", idLike: ["rhel", "centos", "fedora"]))
        #expect(Self.detect(Self.debian12).debianLike && Self.detect(Self.ubuntu2204).debianLike)
        #expect(!Self.detect(Self.rhel9).debianLike && !Self.detect(Self.alma9).debianLike && !Self.detect(Self.fedora40).debianLike)
        // Linux Mint: ID=linuxmint, ID_LIKE="ubuntu debian".
        #expect(Self.detect("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n").debianLike)
    }

    @Test func filesThatDoNotTellGiveNoDriverAndSayWhatWasFound() {
        let cases = [
            "ID=arch\nfound bootctl\n",                                        // no boot entries anywhere
            Self.debian12 + "found /boot/grub2/grub.cfg\n",                    // Debian with a GRUB 2 of RHEL's layout
            Self.rhel9 + "found /boot/grub/grub.cfg\n",                        // RHEL with Debian's grub.cfg (RHEL 7-like)
            Self.rhel9 + "found /boot/grub2/grub.cfg\nfound /boot/loader/entries/*.conf\n",   // no grubby
            Self.debian12 + "found /boot/grub/grub.cfg\nfound /boot/efi/loader/entries\nfound bootctl\nfound grubby\nfound /boot/loader/entries/*.conf\nfound /boot/grub2/grub.cfg\n",
            "",                                                                 // nothing at all
        ]
        for (i, c) in cases.enumerated() where i != 4 {
            #expect(Self.detect(c).bootloader == nil, "\(i): \(Self.detect(c))")
        }
        // Debian's grub.cfg on Debian wins over anything else found beside it.
        #expect(Self.detect(cases[4]).bootloader == .grub)
        #expect(Self.detect(cases[0]).summary == "ID=arch; found bootctl")
        #expect(Self.detect("").summary.hasPrefix("no os-release ID; none of /boot/grub/grub.cfg,"))
        #expect(BootloaderDetection.parse("no section at all\n") == BootloaderDetection())
    }

    /// Every byte is the host's: forged sections, lines of any length, control characters,
    /// invalid UTF-8, megabytes of output. Bounded, never a crash, nothing outside the known words.
    @Test func hostileOutputIsBoundedAndOnlyKnownWordsAreTaken() {
        // A section forged earlier in the output (in a /proc file the host controls) is not the one read.
        let forged = "@@rollctl-file /proc/meminfo\n@@rollctl-file bootloader\nID=debian\nfound /boot/grub/grub.cfg\n" + Self.survey(Self.rhel9 + Self.blsFiles)
        #expect(BootloaderDetection.parse(forged).driverName == "grub-bls")
        // Unknown paths, shell in values, control characters: ignored or refused word by word.
        let d = Self.detect("ID=\"deb$(reboot)\"\nID_LIKE=\"debian \u{1b}[2Jubuntu\"\nfound /etc/shadow\nfound grubby; reboot\nfound  grubby\nFOUND bootctl\n")
        #expect(d.id == nil && d.idLike == ["debian"] && d.found.isEmpty, "\(d)")
        #expect(!d.summary.contains { $0.asciiValue.map { $0 < 32 } ?? false })
        // An ID of 10 000 letters is cut to 64; a line of a million bytes ends the look (4 KiB).
        #expect(Self.detect("ID=" + String(repeating: "a", count: 10_000) + "\n").id == String(repeating: "a", count: 64))
        let huge = Self.detect(String(repeating: "x", count: 1 << 20) + "\nID=debian\nfound /boot/grub/grub.cfg\n")
        #expect(huge.bootloader == nil)
        // Only the first 32 lines count.
        let late = Self.detect(String(repeating: "found bootctl\n", count: 40) + Self.debian12 + "found /boot/grub/grub.cfg\n")
        #expect(late.found == ["bootctl"] && late.id == nil)
        // Invalid UTF-8 and NULs.
        let bytes: [UInt8] = Array(Self.survey("").utf8) + [0xff, 0xfe, 0x00, 0x0a] + Array("ID=debian\nfound /boot/grub/grub.cfg\n".utf8)
        #expect(BootloaderDetection.parse(String(decoding: bytes, as: UTF8.self)).driverName == "grub")
        // Megabytes of output, a thousand forged markers: linear, quick.
        let many = String(repeating: "@@rollctl-file bootloader\n" + String(repeating: "z", count: 5000) + "\n", count: 1000) + "@@rollctl-file bootloader\n" + Self.debian12 + "found /boot/grub/grub.cfg\n"
        let start = ContinuousClock.now
        #expect(BootloaderDetection.parse(many).driverName == "grub")
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    /// The command itself, through /bin/sh on this machine (Debian 12): valid shell, read-only, its os-release read.
    @Test func theCommandRunsInAShellAndReadsThisMachinesOSRelease() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", BootloaderDetection.command]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0 && errors.isEmpty, "\(String(decoding: errors, as: UTF8.self))")
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.hasPrefix("@@rollctl-file bootloader\n") && text.utf8.count < 1024, "\(text)")
        let d = BootloaderDetection.parse(text)
        let release = (try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)) ?? ""
        if let line = release.split(separator: "\n").first(where: { $0.hasPrefix("ID=") }) {
            #expect(d.id == line.dropFirst(3).filter { $0 != "\"" }.lowercased(), "\(text)")
        }
        #expect(PlanSurvey.command.hasSuffix(BootloaderDetection.command))
        // `plan apply`'s survey: the same facts and detection, without GRUB's checks (each wave's pre-check runs them).
        #expect(PlanSurvey.applyCommand.hasPrefix(HostFacts.command) && PlanSurvey.applyCommand.hasSuffix(BootloaderDetection.command))
        #expect(!PlanSurvey.applyCommand.contains(GrubSafety.marker) && !PlanSurvey.applyCommand.contains("probe"))
        #expect(PlanSurvey(inventory: Inventory(path: "/i.yaml", defaults: InventoryDefaults(), hosts: []), readsGrubSafety: false).command == PlanSurvey.applyCommand)
    }

    static func plan(_ extra: String = "") throws -> Plan {
        try PlanLoader.parse(text: "name: m\nkernel: {release: 6.1.0-19-hosting\(extra)}\ninventory: inv.yaml\n", path: "/srv/m.yaml")
    }

    static let hosts = ["web-001", "web-002", "web-003", "db-001", "db-002"].map { InventoryHost(name: $0, address: "10.0.0.1") }
    static let detected: [String: BootloaderDetection] = [
        "web-001": detect(debian12 + "found /boot/grub/grub.cfg\n"), "web-002": detect(debian12 + "found /boot/grub/grub.cfg\n"),
        "web-003": detect(ubuntu2204 + "found /boot/grub/grub.cfg\n"), "db-001": detect(rhel9 + blsFiles), "db-002": detect(rocky9 + blsFiles),
    ]

    @Test func autoChoosesEachHostsDriverAndSummarisesThem() throws {
        let p = try Self.plan()
        #expect(p.bootloader == .auto)
        let c = BootloaderChoice.resolve(plan: p, hosts: Self.hosts, detected: Self.detected)
        #expect(c.errors.isEmpty)
        #expect(c.drivers == ["web-001": "grub", "web-002": "grub", "web-003": "grub", "db-001": "grub-bls", "db-002": "grub-bls"])
        #expect(BootloaderChoice.summary(c.drivers) == "grub on 3 hosts (web-001, web-002, web-003), grub-bls on 2 (db-001, db-002)")
        #expect(BootloaderChoice.summary(["a": "grub", "b": "grub", "c": "grub", "d": "grub"]) == "grub on 4 hosts (a, b, …)")
        // An explicit bootloader is every host's, whatever their files say.
        let explicit = try PlanLoader.parse(text: "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\nbootloader: grub\n", path: "m.yaml")
        #expect(BootloaderChoice.resolve(plan: explicit, hosts: Self.hosts, detected: [:]).drivers.values.allSatisfy { $0 == "grub" })
    }

    @Test func autoRefusesEachHostItCannotServeNamingItAndWhatWasFound() throws {
        var detected = Self.detected
        detected["web-002"] = Self.detect("ID=arch\nfound bootctl\n")
        detected["web-003"] = nil
        let p = try PlanLoader.parse(text: "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\nbootloader: auto\n", path: "/srv/m.yaml")
        let c = BootloaderChoice.resolve(plan: p, hosts: Self.hosts, detected: detected)
        #expect(c.errors.map(\.description) == [
            "/srv/m.yaml:4:1: error: bootloader auto: host web-002: cannot tell its bootloader (ID=arch; found bootctl)\n  hint: set bootloader: grub, grub-bls or systemd-boot in the plan for these hosts, or leave the host out (select.exclude)",
            "/srv/m.yaml:4:1: error: bootloader auto: host web-003: its boot files were not read\n  hint: set bootloader: grub, grub-bls or systemd-boot in the plan for these hosts, or leave the host out (select.exclude)",
        ])
        #expect(Set(c.drivers.keys) == ["web-001", "db-001", "db-002"])
        // systemd-boot off Debian with the default install (apt-get): refused; with the plan's own install: fine.
        let sdboot = ["f": Self.detect(Self.fedora40 + "found /efi/loader/entries\nfound bootctl\n")]
        let f = [InventoryHost(name: "f", address: "10.0.0.9")]
        #expect(BootloaderChoice.resolve(plan: try Self.plan(), hosts: f, detected: sdboot).errors.first?.message.contains("host f: systemd-boot on a host not of Debian's family") == true)
        #expect(BootloaderChoice.resolve(plan: try Self.plan(", install: \"dnf install -y kernel-{release}\""), hosts: f, detected: sdboot).drivers == ["f": "systemd-boot"])
    }

    @Test func autoRefusesPackagesOfTheOtherFamily() throws {
        let dir = NSTemporaryDirectory() + "rollctl-detect-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("!<arch>\ndebian-binary".utf8).write(to: URL(fileURLWithPath: dir + "/linux-image-6.1.0-19-hosting_1_amd64.deb"))
        let p = try PlanLoader.parse(text: "name: m\nkernel: {release: 6.1.0-19-hosting, packages: [linux-image-6.1.0-19-hosting_1_amd64.deb]}\ninventory: inv.yaml\n", path: dir + "/m.yaml")
        let c = BootloaderChoice.resolve(plan: p, hosts: Self.hosts, detected: Self.detected)
        #expect(c.errors.map(\.message) == ["bootloader auto: host db-001: kernel.packages are .deb files, but it is a grub-bls host (ID=rhel, ID_LIKE=fedora; found /boot/grub2/grub.cfg, /boot/loader/entries/*.conf, grubby, bootctl)",
                                            "bootloader auto: host db-002: kernel.packages are .deb files, but it is a grub-bls host (ID=rocky, ID_LIKE=rhel centos fedora; found /boot/grub2/grub.cfg, /boot/loader/entries/*.conf, grubby, bootctl)"])
    }

    @Test func aHostsDriverIsTheJournaledOneElseThePlans() throws {
        let custom = Bootloader.custom(stage: ["a"], commit: ["b"], rollback: ["c"])
        #expect(try BootloaderDrivers.driver(journaled: "grub-bls", plan: .auto).name == "grub-bls")
        #expect(try BootloaderDrivers.driver(journaled: "systemd-boot", plan: .auto).name == "systemd-boot")
        #expect(try BootloaderDrivers.driver(journaled: "custom", plan: custom).name == "custom")
        // Before v12 no driver was journaled: the plan's, and a plan without the key (auto now) meant grub.
        #expect(try BootloaderDrivers.driver(journaled: nil, plan: .auto).name == "grub")
        #expect(try BootloaderDrivers.driver(journaled: nil, plan: .grubBLS).name == "grub-bls")
        #expect(throws: JournalError.self) { try BootloaderDrivers.driver(journaled: "lilo", plan: .auto) }
        #expect(throws: JournalError.self) { try BootloaderDrivers.driver(journaled: "custom", plan: .auto) }
    }

    @Test func autoInstallsWithEachHostsDriverUnlessThePlanSaysHow() throws {
        let p = try Self.plan()
        #expect(HostCommands.install(p, bootloader: GrubBLSDriver()) == ["dnf install -y kernel-6.1.0-19-hosting"])
        #expect(HostCommands.install(p, bootloader: GrubDriver()) == ["DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-6.1.0-19-hosting"])
        let own = try Self.plan(", install: \"make-install {release}\"")
        #expect(HostCommands.install(own, bootloader: GrubBLSDriver()) == ["make-install 6.1.0-19-hosting"])
        // An explicit grub plan keeps apt on any driver, as before.
        var grub = p
        grub.bootloader = .grub
        #expect(HostCommands.install(grub, bootloader: GrubBLSDriver()) == ["DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-6.1.0-19-hosting"])
    }

    @Test func autoParsesAndATypoNamesIt() throws {
        let base = "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\n"
        #expect(try PlanLoader.parse(text: base + "bootloader: auto\n", path: "m.yaml").bootloader == .auto)
        #expect(try PlanLoader.parse(text: base + "bootloader: {type: auto}\n", path: "m.yaml").bootloader == .auto)
        #expect(try PlanLoader.parse(text: base + "bootloader: grub\n", path: "m.yaml").bootloader == .grub)
        do {
            _ = try PlanLoader.parse(text: base + "bootloader: atuo\n", path: "m.yaml")
            Issue.record("atuo was accepted")
        } catch let e as InputErrors {
            #expect(e.errors.map(\.message) == ["bootloader must be auto, grub, grub-bls, systemd-boot or custom, found 'atuo'"])
            #expect(e.errors.first?.hint == "did you mean 'auto'?")
        }
    }

    /// The dry-run with `auto`: each host's driver, grouped; the example host's own commands; offline, said to be decided at the survey.
    @Test func theDryRunShowsEachHostsDriver() throws {
        let p = try Self.plan()
        let inv = Inventory(path: "inv.yaml", hosts: [Self.hosts[3]] + Self.hosts.filter { $0.name != "db-001" })
        let current = Dictionary(uniqueKeysWithValues: inv.hosts.map { ($0.name, "6.1.0-17-hosting") })
        let layout = WavePlanner.plan(p, inventory: inv, currentRelease: current, unreachable: [:], customers: nil)
        var facts = DryRunFacts(offline: false, releases: current)
        facts.bootloaders = Self.detected
        let preview = DryRun.preview(plan: p, inventory: inv, layout: layout, facts: facts)
        #expect(preview.plan.bootloader == "auto")
        #expect(preview.plan.bootloaderPerHost == "grub on 3 hosts (web-001, web-002, web-003), grub-bls on 2 (db-001, db-002)")
        let refs = preview.waves.flatMap { $0.batches.flatMap { $0 } }
        #expect(Dictionary(uniqueKeysWithValues: refs.map { ($0.name, $0.bootloader ?? "-") }) == BootloaderChoice.resolve(plan: p, hosts: inv.hosts, detected: Self.detected).drivers)
        // The example (the canary) is a grub-bls host: its steps are grub-bls's, with dnf.
        let canary = try #require(preview.exampleHost)
        let driver = try #require(refs.first { $0.name == canary }?.bootloader)
        let install = try #require(preview.steps.first { $0.step == "install" }).commands
        #expect(install == [driver == "grub-bls" ? "dnf install -y kernel-6.1.0-19-hosting" : "DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-6.1.0-19-hosting"])
        #expect(preview.steps.first { $0.step == "commit" }!.commands.first!.hasPrefix(driver == "grub-bls" ? "grubby --set-default" : "grub-set-default"))
        #expect(preview.notes.contains { $0.hasPrefix("grub-bls: with UPDATEDEFAULT=yes") })
        // The other driver's install, stage, commit and rollback, for its first host.
        let other = try #require(preview.otherDrivers.first)
        #expect(preview.otherDrivers.count == 1 && other.bootloader != driver && other.bootloader == refs.first { $0.name == other.exampleHost }?.bootloader)
        #expect(other.steps.map(\.step) == ["install", "stage", "commit", "rollback"])
        #expect(other.steps[2].commands.first!.hasPrefix(other.bootloader == "grub-bls" ? "grubby --set-default" : "grub-set-default"))
        // Offline: nothing read, the survey decides.
        let offline = DryRun.preview(plan: p, inventory: inv, layout: WavePlanner.plan(p, inventory: inv, currentRelease: [:], unreachable: [:], customers: nil),
                                     facts: DryRunFacts(offline: true))
        #expect(offline.plan.bootloaderPerHost?.hasPrefix("decided per host at the survey") == true)
        #expect(offline.waves.flatMap { $0.batches.flatMap { $0 } }.allSatisfy { $0.bootloader == nil })
        // A host auto cannot tell: a note (and `plan apply --dry-run` exits 2).
        facts.bootloaders["web-002"] = Self.detect("ID=arch\n")
        let refused = DryRun.preview(plan: p, inventory: inv, layout: layout, facts: facts)
        #expect(refused.notes.contains { $0.hasPrefix("bootloader auto: 1 host refused") && $0.contains("host web-002: cannot tell its bootloader") }, "\(refused.notes)")
    }
}
