import Foundation
import Testing
@testable import Basics
@testable import SSH
@testable import HealthGate
@testable import RolloutConfig

/// The repository root, from this file's path.
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
let corpusDir = repoRoot + "/Tests/RolloutTests/corpus"

@Suite struct PlanLoaderTests {
    @Test func theFlagshipPlanLoadsWithEveryValue() throws {
        let loaded = try PlanLoader.loadChecked(path: repoRoot + "/plans/socket-bind-fix.yaml")
        let p = loaded.plan
        #expect(p.name == "socket-bind-fix")
        #expect(p.kernel.release == "6.1.0-19-hosting")
        #expect(p.kernel.install == ["apt-get update", "DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-{release}"])
        #expect(p.kernel.minBootFreeBytes == 128 << 20)
        #expect(p.bootloader == .grub)
        #expect(p.inventoryPath == repoRoot + "/plans/fleet/inventory.yaml")
        #expect(p.selection.labels == ["role": "web"])
        #expect(p.waves.sizes == [.count(1), .percent(5), .percent(25), .percent(100)])
        #expect(p.waves.maxParallel == 5 && p.waves.failureDomain == "rack" && p.waves.separateCustomers)
        #expect(p.reboot == RebootSpec(command: "systemctl reboot", timeout: .seconds(600), settle: .seconds(5)))
        #expect(p.gate.soak == .seconds(900) && p.gate.interval == .seconds(30))
        #expect(p.gate.sUnreclaimMax == 2 << 30)
        #expect(p.gate.sUnreclaimMaxShare == 0.10)
        #expect(p.gate.sUnreclaimGrowthMaxPerHour == 32 << 20)
        #expect(p.gate.testSite?.minSuccessRatio == 0.99 && p.gate.testSite?.minRequests == 40)
        #expect(p.gate.customChecks == [CustomCheck(name: "nginx", command: "systemctl is-active --quiet nginx")])
        let n = try #require(p.notify)
        #expect(n.channel == .smtp(host: "mail.example.net", port: 587, from: "maintenance@example.net", starttls: true,
                                   username: "rollctl", passwordEnv: "ROLLCTL_SMTP_PASSWORD", passwordFile: nil))
        #expect(n.leadTime == .seconds(1800) && n.company == "Example Hosting" && n.blockOnFailure)
        #expect(n.templateDir == repoRoot + "/plans/templates")
        #expect(p.failure == FailurePolicy(rollback: .wave, maxFailedHostsPerWave: 0, maxFailedHostsTotal: 2))
        #expect(loaded.customers?.customers(onHost: "web-024").contains { $0.name == "Webshop Novak, s.r.o." } == true)
        #expect(p.text.contains("socket.c"))
    }

    @Test(arguments: ["fleetsim-fixed", "fleetsim-leaky", "fleetsim-panic", "fleetsim-promote"])
    func fleetsimPlansAreValid(name: String) throws {
        // Their inventory is written by `fleetsim up`; here the plan alone must load.
        let p = try PlanLoader.load(path: repoRoot + "/plans/\(name).yaml")
        #expect(p.inventoryPath == repoRoot + "/.fleetsim/inventory.yaml")
        #expect(p.notify?.customersPath == repoRoot + "/.fleetsim/customers.csv")
        #expect(p.waves.sizes == [.count(1), .percent(25), .percent(100)] && p.waves.failureDomain == "rack")
        #expect(p.gate.soak == .seconds(20) && p.gate.interval == .seconds(2) && p.reboot.timeout == .seconds(60))
        // fleetsim's leaky kernels grow ~38-40 MiB/min: far over the limit; the flat one's noise under it.
        let limit = try #require(p.gate.sUnreclaimGrowthMaxPerHour)
        #expect(limit < 38 * 60 << 20)
        let expected = ["fleetsim-fixed": "6.1.0-19-hosting", "fleetsim-promote": "6.1.0-19-hosting", "fleetsim-leaky": "6.1.0-18-hosting", "fleetsim-panic": "6.1.0-20-hosting"]
        #expect(p.kernel.release == expected[name])
    }

    @Test func aMinimalPlanGetsTheDocumentedDefaults() throws {
        let p = try PlanLoader.parse(text: "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\n", path: "/srv/plans/m.yaml")
        #expect(p.inventoryPath == "/srv/plans/inv.yaml")
        #expect(p.kernel == KernelSpec(release: "6.1.0-19-hosting") && !p.kernel.installGiven)
        // No `bootloader` key: each host's is told from its files at the survey.
        #expect(p.bootloader == .auto)
        #expect(p.waves == WaveSpec())
        #expect(p.reboot == RebootSpec())
        #expect(p.gate == GateSettings())
        #expect(p.notify == nil)
        #expect(p.failure == FailurePolicy())
        #expect(p.selection == Selection())
    }

    @Test func systemdBootAndCustomBootloaders() throws {
        let base = "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\n"
        let sd = try PlanLoader.parse(text: base + "bootloader: {type: systemd-boot}\n", path: "m.yaml")
        #expect(sd.bootloader == .systemdBoot)
        let custom = try PlanLoader.parse(text: base + """
        bootloader:
          type: custom
          stage: efibootmgr --bootnext 0002
          commit: ["efibootmgr --bootorder 0002,0001"]
          rollback: efibootmgr --bootorder 0001,0002
        """, path: "m.yaml")
        #expect(custom.bootloader == .custom(stage: ["efibootmgr --bootnext 0002"], commit: ["efibootmgr --bootorder 0002,0001"],
                                             rollback: ["efibootmgr --bootorder 0001,0002"]))
        #expect(throws: InputErrors.self) { try PlanLoader.parse(text: base + "bootloader: {type: grub, stage: x}\n", path: "m.yaml") }
    }

    @Test func grubBLSInstallsWithDnfUnlessThePlanSaysHow() throws {
        let base = "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\n"
        let short = try PlanLoader.parse(text: base + "bootloader: grub-bls\n", path: "m.yaml")
        #expect(short.bootloader == .grubBLS)
        #expect(short.kernel.install == ["dnf install -y kernel-{release}"])
        let long = try PlanLoader.parse(text: base + "bootloader: {type: grub-bls}\n", path: "m.yaml")
        #expect(long.bootloader == .grubBLS && long.kernel.install == KernelSpec.dnfInstall)
        // The plan's own install command stays, whatever the bootloader.
        let own = try PlanLoader.parse(text: "name: m\nkernel: {release: 6.1.0-19-hosting, install: \"rpm -i /srv/k-{release}.rpm\"}\ninventory: inv.yaml\nbootloader: grub-bls\n", path: "m.yaml")
        #expect(own.kernel.install == ["rpm -i /srv/k-{release}.rpm"])
        // Debian's default is untouched.
        #expect(try PlanLoader.parse(text: base + "bootloader: grub\n", path: "m.yaml").kernel.install == KernelSpec.aptInstall)
        // A typo names the nearest type, at its line and column.
        do {
            _ = try PlanLoader.parse(text: base + "bootloader: grub-blss\n", path: "m.yaml")
            Issue.record("grub-blss was accepted")
        } catch let e as InputErrors {
            #expect(e.errors.map { "\($0.line ?? 0):\($0.column ?? 0) \($0.hint ?? "")" } == ["4:13 did you mean 'grub-bls'?"])
        }
        #expect(throws: InputErrors.self) { try PlanLoader.parse(text: base + "bootloader: {type: grub-bls, commit: x}\n", path: "m.yaml") }
    }

    @Test func placeholdersOnlyWhereTheyAreReplaced() throws {
        let base = "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\n"
        func errors(_ extra: String) -> [String] {
            do { _ = try PlanLoader.parse(text: base + extra, path: "m.yaml"); return [] } catch let e as InputErrors {
                return e.errors.map { "\($0.line ?? 0):\($0.column ?? 0) \($0.message) \($0.hint ?? "")" }
            } catch { return ["\(error)"] }
        }
        #expect(errors("bootloader:\n  type: custom\n  stage: x {release}\n  commit: [\"y {release}\"]\n  rollback: z {previous_release}\n").isEmpty)
        #expect(errors("bootloader:\n  type: custom\n  stage: [\"x {previous_release}\"]\n  commit: y\n  rollback: z\n")
                == ["6:11 each command of bootloader.stage cannot use {previous_release} here rollctl replaces only {release}"])
        #expect(errors("reboot:\n  command: kexec -l /boot/vmlinuz-{release}\n")
                == ["5:12 reboot.command cannot use {release} nothing is replaced in this command"])
        // Commands rollctl does not touch may use braces freely (awk, find -exec ... {} +).
        #expect(errors("gate:\n  checks:\n    - {name: a, command: \"awk '{print}' /proc/loadavg\"}\n").isEmpty)
        #expect(errors("kernel2: x\n").count == 1)
    }

    @Test func smtpAuthWithoutStartTLSIsRefusedUnlessLoopbackOrAllowed() throws {
        let base = "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\nnotify:\n  customers: c.csv\n  channel:\n"
        func errors(_ channel: String) -> [InputError] {
            do { _ = try PlanLoader.parse(text: base + channel, path: "m.yaml"); return [] } catch let e as InputErrors {
                return e.errors
            } catch { return [InputError(file: "?", "\(error)")] }
        }
        func channel(host: String, starttls: Bool, extra: String = "") -> String {
            "    type: smtp\n    host: \"\(host)\"\n    from: r@example.net\n    starttls: \(starttls)\n    username: rollctl\n    password_env: SMTP_PASSWORD\n" + extra
        }
        let e = errors(channel(host: "mail.example.net", starttls: false))
        #expect(e.count == 1)
        let first = try #require(e.first)
        // At the username (line 11, after the value's indent), says why and what to do.
        #expect(first.file == "m.yaml" && first.line == 11 && first.column == 15, "\(first.location)")
        #expect(first.message.contains("clear text") && first.message.contains("mail.example.net"))
        #expect(first.hint?.contains("starttls: true") == true && first.hint?.contains("allow_plaintext_auth: true") == true)
        // Loopback, STARTTLS or an explicit allow are fine.
        for host in ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"] {
            #expect(errors(channel(host: host, starttls: false)).isEmpty, "\(host)")
        }
        for host in ["128.0.0.1", "10.0.0.1", "::2", "mail.localhost.example"] {
            #expect(errors(channel(host: host, starttls: false)).count == 1, "\(host)")
        }
        #expect(errors(channel(host: "mail.example.net", starttls: true)).isEmpty)
        #expect(errors(channel(host: "mail.example.net", starttls: false, extra: "    allow_plaintext_auth: true\n")).isEmpty)
        #expect(errors(channel(host: "mail.example.net", starttls: false, extra: "    allow_plaintext_auth: false\n")).count == 1)
        // Without a username nothing secret is sent.
        #expect(errors("    {type: smtp, host: mail.example.net, from: r@example.net, starttls: false}\n").isEmpty)
    }

    @Test func aWebhookURLTheWebhookCannotPostToIsRefusedAtLoad() throws {
        func errors(_ url: String) -> [InputError] {
            let text = "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\nnotify:\n  customers: c.csv\n  channel: {type: webhook, url: \"\(url)\"}\n"
            do { _ = try PlanLoader.parse(text: text, path: "m.yaml"); return [] } catch let e as InputErrors {
                return e.errors
            } catch { return [InputError(file: "?", "\(error)")] }
        }
        #expect(errors("https://status.example.org/hook").isEmpty)
        #expect(errors("http://[::1]:8080/hook?x=1").isEmpty)
        #expect(errors("ftp://status.example.org/").first?.message == "webhook url 'ftp://status.example.org/' is not an http(s) URL")
        // URLs Foundation takes but the webhook (`HTTPURL`) would refuse at the first notice.
        let e = errors("http://u:p@status.example.org/")
        #expect(e.count == 1 && e.first?.line == 6)
        #expect(e.first?.message == "webhook url 'http://u:p@status.example.org/' is not an http(s) URL: user info in the URL is not supported")
    }

    @Test func typedValuesInEveryForm() throws {
        let p = try PlanLoader.parse(text: """
        name: m
        kernel: {release: 6.1.0-19-hosting, min_boot_free: 1.5GiB}
        inventory: /etc/rollctl/inventory.yaml
        gate:
          soak: 1h30m
          interval: 90s
          sunreclaim_max: null
          sunreclaim_max_share: 0.2
          sunreclaim_growth_max: 64MiB/hour
          test_site: off
          oom_kills_since: gate_start
          min_good_samples: 90%
        """, path: "plans/m.yaml")
        #expect(p.inventoryPath == "/etc/rollctl/inventory.yaml")
        #expect(p.kernel.minBootFreeBytes == 1610612736)
        #expect(p.gate.soak == .seconds(5400) && p.gate.interval == .seconds(90))
        #expect(p.gate.sUnreclaimMax == nil && p.gate.sUnreclaimMaxShare == 0.2)
        #expect(p.gate.sUnreclaimGrowthMaxPerHour == 64 << 20)
        #expect(p.gate.testSite == nil)
        #expect(p.gate.oomKillsSince == .gateStart)
        #expect(p.gate.minGoodSampleShare == 0.9)
    }

    @Test func everyProblemIsReportedAtOnce() throws {
        let e = try #require(throws: InputErrors.self) { try PlanLoader.load(path: corpusDir + "/p-many-errors.yaml") }
        #expect(e.errors.count == 5)
        #expect(e.errors.allSatisfy { $0.file.hasSuffix("p-many-errors.yaml") && $0.line != nil && $0.column != nil })
        #expect(e.errors.map(\.line) == [2, 6, 7, 9, 11])
    }

    @Test func relativePathsAreFoldedForMessages() {
        #expect(PlanParser.normalize("plans/../.fleetsim/inventory.yaml") == ".fleetsim/inventory.yaml")
        #expect(PlanParser.normalize("../a/./b") == "../a/b")
        #expect(PlanParser.normalize("/srv/plans/../x") == "/srv/x")
        #expect(PlanParser.normalize("/../x") == "/x")
    }

    // MARK: - cross-checks

    func checked(_ plan: String) -> [InputError] {
        do {
            _ = try PlanLoader.loadChecked(path: corpusDir + "/" + plan)
            return []
        } catch let e as InputErrors {
            return e.errors
        } catch {
            return [InputError(file: "?", "\(error)")]
        }
    }

    @Test func theOKCorpusPlanIsOK() throws {
        let loaded = try PlanLoader.loadChecked(path: corpusDir + "/_ok-plan.yaml")
        #expect(loaded.inventory.hosts.count == 4)
    }

    @Test func aProxyCommandInTheSSHConfigOfASelectedHostFailsTheCheckedLoad() throws {
        // _ok-plan selects its inventory's hosts; a ProxyCommand for all of them is refused at the config's line.
        let cfg = SSHConfig.parse("Host nothing-here\n  User x\nHost *\n  ProxyCommand nc jump 22\n", path: "/etc/test-ssh-config")
        let e = try #require(throws: InputErrors.self) {
            try PlanLoader.loadChecked(path: corpusDir + "/_ok-plan.yaml", sshConfig: cfg)
        }
        #expect(e.errors.count == 1)
        #expect(e.errors.first?.location == "/etc/test-ssh-config:4")
        #expect(e.errors.first?.message.contains("ProxyCommand") == true)
        // So is a chain of bastions.
        let chain = SSHConfig.parse("Host *\n  ProxyJump a.example.net,b.example.net\n", path: "/etc/test-ssh-config")
        let c = try #require(throws: InputErrors.self) { try PlanLoader.loadChecked(path: corpusDir + "/_ok-plan.yaml", sshConfig: chain) }
        #expect(c.errors.first?.location == "/etc/test-ssh-config:2" && c.errors.first?.message.contains("one bastion only") == true)
        // One bastion is honoured; a config that does not concern the selected hosts is fine.
        let one = try PlanLoader.loadChecked(path: corpusDir + "/_ok-plan.yaml",
                                             sshConfig: SSHConfig.parse("Host *\n  ProxyJump ops@jump.example.net\n"))
        let h = try #require(one.inventory.hosts.first)
        #expect(one.inventory.jump(for: h, sshConfig: SSHConfig.parse("Host *\n  ProxyJump ops@jump.example.net\n"))?.endpoint.user == "ops")
        _ = try PlanLoader.loadChecked(path: corpusDir + "/_ok-plan.yaml", sshConfig: SSHConfig.parse("Host other\n  ProxyCommand j\n"))
    }

    @Test func inventoryOverride() throws {
        let e = try #require(throws: InputErrors.self) {
            try PlanLoader.loadChecked(path: corpusDir + "/_ok-plan.yaml", inventoryPath: corpusDir + "/i-hostile-name-semicolon.yaml")
        }
        #expect(e.errors.first?.file.hasSuffix("i-hostile-name-semicolon.yaml") == true)
        #expect(e.errors.first?.line == 2)
    }

    @Test func monitoringKeys() throws {
        let base = "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\n"
        func errors(_ extra: String) -> [String] {
            do { _ = try PlanLoader.parse(text: base + extra, path: "m.yaml"); return [] } catch let e as InputErrors {
                return e.errors.map { "\($0.line ?? 0):\($0.column ?? 0) \($0.message)" }
            } catch { return ["\(error)"] }
        }
        let plan = try PlanLoader.parse(text: base + """
        gate:
          prometheus:
            url: http://prom:9090
            checks:
              - {name: slab, query: 'node_memory_SUnreclaim_bytes{instance="{address}:9100"}', max: 2GiB}
              - {name: five, query: 'sum(rate(x{host="{name}"}[5m]))', max: 0.5, min: 0}
          block_on_alerts: {url: http://am:9093, matchers: ['severity="critical"', 'instance=~"{address}:.*"'], max_wait: 10m}
        silence: {url: http://am:9093, matchers: ['instance=~"{address}:.*"'], comment: kernel}
        """, path: "m.yaml")
        let prom = try #require(plan.gate.prometheus)
        #expect(prom.checks.map(\.name) == ["slab", "five"])
        #expect(prom.checks[0].max == 2 * 1024 * 1024 * 1024 && prom.checks[0].unit == .bytes)
        #expect(prom.checks[1].max == 0.5 && prom.checks[1].min == 0 && prom.checks[1].unit == .number)
        let block = try #require(plan.alertBlock)
        #expect(block.matchers.count == 2 && block.perHost && block.maxWait == .seconds(600) && block.interval == .seconds(30))
        #expect(plan.silence?.comment == "kernel")
        // Bad input: where, what, and nothing half-loaded.
        #expect(errors("gate:\n  prometheus: {url: http://p, checks: [{name: a, query: 'up{h={name}}', max: 1}]}\n")
                == ["5:57 gate.prometheus check query: {name} must be inside a quoted label value, e.g. instance=\"{address}:9100\""])
        #expect(errors("gate:\n  prometheus: {url: http://p, checks: [{name: a, query: up}]}\n")
                == ["5:40 a Prometheus check needs 'max', 'min' or both"])
        #expect(errors("gate:\n  prometheus: {url: 'http://u:pw@p', checks: [{name: a, query: up, max: 1}]}\n").first?.contains("carries credentials") == true)
        #expect(errors("gate:\n  prometheus: {url: http://p, checks: [{name: a, query: up, max: lots}]}\n")
                == ["5:66 gate.prometheus check max must be a number or a size like 2GiB, found 'lots'"])
        #expect(errors("gate:\n  block_on_alerts: {url: http://am, matchers: ['severity']}\n").first?.contains("after 'severity' comes =, !=, =~ or !~") == true)
        #expect(errors("silence: {url: http://am, matchers: ['severity=\"critical\"']}\n").first?.contains("must name the host") == true)
        #expect(errors("silence: {url: ftp://am, matchers: ['instance=\"{name}\"']}\n").first?.contains("is not an http:// or https:// URL") == true)
    }
}

/// Every file of the bad-input corpus gives a clear error at the right place.
@Suite struct BadInputCorpusTests {
    /// (file, line, column or nil, text the message or hint contains). Line nil: a whole-file problem.
    static let plans: [(String, Int?, Int?, String)] = [
        ("p-syntax-unclosed-flow.yaml", 7, 15, "YAML syntax: did not find expected ',' or ']'"),
        ("p-syntax-bad-indent.yaml", 4, 3, "YAML syntax"),
        ("p-tab-indent.yaml", 3, 1, "found character that cannot start any token"),
        ("p-binary.yaml", 2, 8, "binary data (a NUL byte)"),
        ("p-invalid-utf8.yaml", nil, nil, "not valid UTF-8"),
        ("p-empty.yaml", 1, 1, "the file is empty"),
        ("p-deep-nesting.yaml", 2, 40, "nesting deeper than 32 levels"),
        ("p-duplicate-key.yaml", 18, 1, "duplicate key 'name'"),
        ("p-top-is-list.yaml", 1, 1, "the plan must be a mapping"),
        ("p-alias-bomb.yaml", 18, 1, "unknown key 'lol0'"),
        ("p-unknown-top-key.yaml", 2, 1, "did you mean 'kernel'?"),
        ("p-unknown-gate-key.yaml", 13, 3, "did you mean 'interval'?"),
        ("p-unknown-wave-key.yaml", 7, 3, "did you mean 'max_parallel'?"),
        ("p-sizes-not-a-list.yaml", 6, 10, "waves.sizes must be a list"),
        ("p-zero-hosts.yaml", 6, 11, "wave size 0 is impossible"),
        ("p-150-percent.yaml", 6, 14, "wave size 150% is impossible"),
        ("p-sizes-not-increasing.yaml", 6, 19, "wave sizes must grow: 25% after 50%"),
        ("p-sizes-no-100.yaml", 6, 14, "must be 100%"),
        ("p-percent-then-count.yaml", 6, 16, "a host count (5) after a share"),
        ("p-negative-duration.yaml", 12, 9, "gate.soak must not be negative"),
        ("p-duration-no-unit.yaml", 10, 12, "reboot.timeout needs a unit"),
        ("p-duration-garbage.yaml", 12, 9, "gate.soak must be a duration"),
        ("p-soak-short.yaml", 12, 9, "shorter than two samples"),
        ("p-huge-number.yaml", 7, 17, "waves.max_parallel is out of range"),
        ("p-huge-size.yaml", 18, 19, "gate.sunreclaim_max must be a size"),
        ("p-ratio-over.yaml", 18, 18, "150% is impossible"),
        ("p-ratio-garbage.yaml", 18, 25, "must be a share like 99.5%"),
        ("p-missing-release.yaml", 3, 3, "kernel needs a 'release'"),
        ("p-release-hostile.yaml", 3, 12, "is not a kernel release"),
        ("p-missing-name-inventory.yaml", 1, 1, "the plan needs an 'inventory'"),
        ("p-bootloader-unknown.yaml", 18, 13, "did you mean 'grub'?"),
        ("p-custom-missing-commands.yaml", 19, 3, "a custom bootloader needs 'commit'"),
        ("p-command-newline.yaml", 11, 12, "reboot.command must be one line"),
        ("p-unknown-placeholder.yaml", 4, 12, "unknown placeholder {relase}"),
        ("p-rollback-typo.yaml", 19, 13, "did you mean 'wave'?"),
        ("p-site-url-https.yaml", 18, 10, "only http:// URLs"),
        ("p-site-timeout-too-long.yaml", 17, 14, "do not fit in one 2s interval"),
        ("p-min-requests-unreachable.yaml", 18, 19, "1000 required but the soak plans only 22"),
        ("p-channel-unknown.yaml", 20, 19, "notify.channel.type must be smtp or webhook"),
        ("p-smtp-bad-from.yaml", 20, 55, "is not an email address"),
        ("p-hostile-select-host.yaml", 19, 11, "'web-1; rm -rf /' is not a valid host name"),
        ("p-check-missing-command.yaml", 19, 7, "a gate check needs a 'command'"),
        ("p-separate-customers-without-notify.yaml", 9, 3, "separate_customers needs a customers file"),
        ("p-many-errors.yaml", 9, 12, "reboot.timeout must not be negative"),
        // cross-checks against the inventory, customers and templates
        ("x-empty-selection.yaml", 18, 1, "the selection is empty"),
        ("x-domain-missing.yaml", 8, 3, "did you mean 'rack'?"),
        ("x-unknown-select-host.yaml", 19, 3, "'web-999', which is not in the inventory"),
        ("x-missing-customers-file.yaml", 19, 3, "nope.csv: no such file"),
        ("x-missing-inventory.yaml", 4, 1, "nope.yaml: no such file"),
        ("x-template-unknown-var.yaml", 1, nil, "did you mean 'customer_name'?"),
        ("x-bad-inventory.yaml", 2, 11, "host name '$(reboot)' is not valid"),
        ("x-missing-password-file.yaml", 20, 3, "secret/nope does not exist or cannot be read"),
    ]

    @Test(arguments: plans)
    func badPlan(_ c: (String, Int?, Int?, String)) {
        let (file, line, column, text) = c
        var errors: [InputError] = []
        do {
            _ = try PlanLoader.loadChecked(path: corpusDir + "/" + file)
        } catch let e as InputErrors {
            errors = e.errors
        } catch {
            Issue.record("\(file): unexpected \(error)")
        }
        #expect(!errors.isEmpty, "\(file) was accepted")
        let match = errors.first { ($0.message + " " + ($0.hint ?? "")).contains(text) }
        #expect(match != nil, "\(file): no error says '\(text)'; got \(errors.map(\.description))")
        if let m = match {
            #expect(m.line == line && m.column == column, "\(file): '\(text)' at \(m.location), expected \(line.map(String.init) ?? "-"):\(column.map(String.init) ?? "-")")
        }
        // Messages are one printable line each: hostile values never reach the terminal raw.
        for e in errors {
            #expect(!e.message.contains(where: { $0.isNewline || $0 == "\u{1B}" }), "\(file): \(e.message)")
        }
    }

    static let inventories: [(String, Int?, String)] = [
        ("i-hostile-name-semicolon.yaml", 2, "host name 'web-1;reboot' is not valid"),
        ("i-hostile-name-subshell.yaml", 2, "host name '$(reboot)' is not valid"),
        ("i-hostile-name-newline.yaml", 2, "host name 'web-1?evil' is not valid"),
        ("i-hostile-address.yaml", 3, "is not an IPv4/IPv6 address or DNS name"),
        ("i-hostile-label.yaml", 4, "label rack=r1;rm -rf / is not valid"),
        ("i-duplicate-host.yaml", 3, "duplicate host name 'web-1'"),
        ("i-no-hosts.yaml", 1, "the inventory has no 'hosts' list"),
        ("i-port-huge.yaml", 4, "port must be a whole number"),
        ("i-binary.yaml", 2, "binary data"),
        ("i-unknown-key.yaml", 3, "did you mean 'address'?"),
    ]

    @Test(arguments: inventories)
    func badInventory(_ c: (String, Int?, String)) throws {
        let (file, line, text) = c
        let e = try #require(throws: InputErrors.self) {
            try PlanLoader.loadChecked(path: corpusDir + "/_ok-plan.yaml", inventoryPath: corpusDir + "/" + file)
        }
        let match = e.errors.first { ($0.message + " " + ($0.hint ?? "")).contains(text) }
        #expect(match?.line == line, "\(file): \(e.errors.map(\.description))")
        #expect(match?.file.hasSuffix(file) == true)
    }

    static let customerFiles: [(String, Int?, String)] = [
        ("c-missing-column.csv", 1, "the header lacks the column email"),
        ("c-bad-email.csv", 2, "'anna-at-example' is not an email address"),
        ("c-unknown-host.csv", 3, "host 'web-009' is not in the inventory"),
        ("c-unclosed-quote.csv", 2, "a quoted field is never closed"),
        ("c-header-injection.csv", 2, "is not an email address"),
        ("c-inconsistent.csv", 3, "customer c1 is 'Anna' <anna@example.org> at line 2"),
        ("c-hostile-host.csv", 2, "host 'web-001;reboot' is not a valid host name"),
        ("c-binary.csv", 2, "binary data (a NUL byte) in a customers file"),
    ]

    @Test(arguments: customerFiles)
    func badCustomers(_ c: (String, Int?, String)) throws {
        let (file, line, text) = c
        let inv = try Inventory.load(path: corpusDir + "/_ok-inventory.yaml")
        let e = try #require(throws: InputErrors.self) { try Customers.load(path: corpusDir + "/" + file, inventory: inv) }
        let match = e.errors.first { $0.message.contains(text) }
        #expect(match?.line == line, "\(file): \(e.errors.map(\.description))")
    }

    @Test func aTenMegabytePlanIsRefusedUnread() throws {
        let path = NSTemporaryDirectory() + "rollctl-10mb-\(getpid()).yaml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var text = "name: big\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\ndescription: "
        text += String(repeating: "x", count: 10 * 1024 * 1024) + "\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let start = ContinuousClock.now
        let e = try #require(throws: InputErrors.self) { try PlanLoader.load(path: path) }
        #expect(e.errors.count == 1)
        #expect(e.errors[0].message.contains("rollctl reads at most 4 MiB"))
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test func aTenMegabyteInventoryIsRefusedUnread() throws {
        let path = NSTemporaryDirectory() + "rollctl-10mb-inv-\(getpid()).yaml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var text = "hosts:\n"
        let line = "  - {name: web-000000, address: 10.0.0.1, labels: {rack: r1}}\n"
        text.reserveCapacity(10 << 20)
        while text.utf8.count < 10 << 20 { text += line }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let e = try #require(throws: InputErrors.self) {
            try PlanLoader.loadChecked(path: corpusDir + "/_ok-plan.yaml", inventoryPath: path)
        }
        #expect(e.errors.map(\.message) == ["file is 10240 KiB; rollctl reads at most 4 MiB"])
    }

    @Test func theCorpusHasAtLeastFortyBadFiles() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: corpusDir).filter { !$0.hasPrefix("_") && $0.contains(".") }
        #expect(files.count >= 40)
        let tested = Set(Self.plans.map(\.0) + Self.inventories.map(\.0) + Self.customerFiles.map(\.0))
        #expect(Set(files).subtracting(tested).isEmpty, "untested corpus files: \(Set(files).subtracting(tested).sorted())")
    }
}
