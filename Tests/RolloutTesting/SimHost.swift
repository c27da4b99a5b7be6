import Foundation
import Basics
import FleetsimCore
import SSH
import HealthGate
import Engine
import RolloutConfig

/// A Debian host in memory that answers exactly the commands rollctl sends one: the facts
/// loop, `grub.cfg` (fleetsim's generator), `/boot` space, apt, `grub-set-default`,
/// `grub-reboot`, the GRUB safety checks (`setGrub`), the host lease, and an instant reboot that follows GRUB's one-shot and
/// saved choice. As a `rhel` host (`flavour:`): `grubby --info=ALL` of its BLS entries
/// (`<machine-id>-<release>`), `dnf install` making the new kernel the saved default as
/// UPDATEDEFAULT=yes does, `grub2-set-default`, `grub2-reboot`, `grubby --set-default`. As a
/// `systemd-boot` host: `bootctl list --json=short` (`<machine-id>-<release>.conf`), `bootctl
/// is-installed`, `set-default` and `set-oneshot`, and with no default saved the newest kernel
/// booting, as systemd-boot boots the entry that sorts first. Unknown commands exit 127, so a change in what the orchestrator sends
/// shows up as failed hosts rather than being silently accepted. The engine's `NIOEmbedded`:
/// `bench-core` and the in-process engine tests drive the real orchestrator over it.
public actor SimHost: RemoteHost {
    /// `debian`, `rhel` or `systemd-boot` (fleetsim's flavours).
    public typealias Flavour = FleetsimCore.Flavour
    public nonisolated let hostName: String
    public private(set) var release: String
    public private(set) var bootID = UUID().uuidString.lowercased()
    public private(set) var savedEntry: String?
    public private(set) var nextEntry: String?
    public private(set) var reboots = 0
    public private(set) var commands = 0
    /// Called at every reboot this host is ordered (before it comes back), for tests that
    /// need something to happen at that moment.
    public var onReboot: (@Sendable (String) -> Void)?
    /// The host lease file's text (`/var/lib/rollctl/lease`), nil when none.
    public private(set) var leaseText: String?
    /// Its key changes at the next reboot (a reinstall, a man in the middle): every command after
    /// it fails as OpenSSH's known_hosts check would.
    public var rekeyAtReboot = false
    /// A kernel that hangs at boot: the host stays down (connections refused) until `powerCycle`.
    public var hangsOn: String?
    /// A slab leak: while the host runs `release`, SUnreclaim grows by `bytesPerSecond` from
    /// the moment it booted (on its clock), on top of `meminfo`'s 300000 kB.
    public private(set) var leak: (release: String, bytesPerSecond: Double)?
    /// OOM kills since boot (`/proc/vmstat` `oom_kill`) while the host runs the release named.
    public private(set) var oomKillsOn: [String: UInt64] = [:]
    /// GRUB ignores the one-shot entry (`grub-reboot`): every reboot boots the saved default
    /// (a grubenv GRUB cannot read, `GRUB_DEFAULT` not `saved`).
    public private(set) var ignoresOneShot = false
    /// The release of every boot since the host was made, the first one included (it has
    /// one entry per reboot or power cycle more than that).
    public private(set) var boots: [String]
    /// Commands starting with any of these exit 1 (a read-only grubenv, a full /boot).
    public private(set) var failing: [String] = []
    /// The plan hooks run on this host (`export ROLLCTL_…; sh -c …`), each with the number of
    /// reboots it had had by then. A hook whose command contains `FAIL`, or on a host `failing`
    /// `export ROLLCTL_`, exits 1.
    public private(set) var hooks: [(command: String, rebootsBefore: Int)] = []
    private var bootedAt: Date
    /// Its time: the leak grows and refused logins end by it (the rollout's clock, so a virtual one moves both).
    public nonisolated let clock: any RolloutClock
    private var rekeyed = false
    private var down = false
    let kernels: [String]
    let menu: [Grub.MenuItem]
    let grubCfg: String
    public nonisolated let flavour: Flavour
    /// A rhel host's machine id: its BLS entry ids are `<machineID>-<release>`.
    public nonisolated let machineID: String

    public static let meminfo = "MemTotal:       65536000 kB\nMemFree:        30000000 kB\nMemAvailable:   50000000 kB\nSlab:             900000 kB\nSReclaimable:     600000 kB\nSUnreclaim:       300000 kB\n"

    /// `kernels`: what GRUB's menu offers (the first is the one listed first).
    public init(name: String, release: String, kernels: [String], clock: any RolloutClock = SystemClock(), flavour: Flavour = .debian) {
        hostName = name
        self.flavour = flavour
        machineID = String((Array(name.utf8).map { String(format: "%02x", $0) }.joined() + String(repeating: "0", count: 32)).prefix(32))
        self.clock = clock
        bootedAt = clock.now
        self.release = release
        boots = [release]
        self.kernels = kernels
        (grubCfg, menu) = Self.menu(for: kernels)
    }

    /// Every host with the same kernels has the same grub.cfg: written and parsed once
    /// (bench-core makes 100 000 hosts; parsing each one's menu was a fifth of its run).
    private static let menus = MenuCache()
    private final class MenuCache: @unchecked Sendable {
        let lock = NSLock()
        var byKernels: [[String]: (String, [Grub.MenuItem])] = [:]
    }
    private static func menu(for kernels: [String]) -> (String, [Grub.MenuItem]) {
        menus.lock.lock(); defer { menus.lock.unlock() }
        if let m = menus.byKernels[kernels] { return m }
        let cfg = Grub.config(kernels: kernels, rootUUID: "0b5e6f3a-simhost")
        let m = (cfg, Grub.parseMenu(cfg))
        menus.byKernels[kernels] = m
        return m
    }

    public func setOnReboot(_ f: @escaping @Sendable (String) -> Void) { onReboot = f }

    /// What `BootloaderDetection.command` prints on this host (the survey's last section): its
    /// os-release and boot files as its flavour has them, unless a test sets other bytes.
    public private(set) var bootFiles: String?
    public func setBootFiles(_ text: String) { bootFiles = text }
    var bootFilesText: String {
        bootFiles ?? (flavour == .rhel
            ? "ID=\"rhel\"\nID_LIKE=\"fedora\"\nfound /boot/grub2/grub.cfg\nfound /boot/loader/entries/*.conf\nfound grubby\nfound bootctl\n"
            : flavour == .systemdBoot ? "ID=debian\nfound /boot/efi/loader/entries\nfound bootctl\n"
            : "ID=debian\nfound /boot/grub/grub.cfg\nfound bootctl\n")
    }

    /// What `GrubSafety.command` reads: `GRUB_DEFAULT` (nil: not set), `GRUB_RECORDFAIL_TIMEOUT`,
    /// `grub-probe`'s abstraction and fs for /boot/grub, grubenv's recordfail (RHEL's layout on a
    /// rhel host: `grub2-probe`, /boot/grub2).
    public private(set) var grubDefault: String? = "saved"
    public private(set) var recordfailTimeout: String?
    public private(set) var bootAbstraction = ""
    public private(set) var bootFS = "ext2"
    public private(set) var recordfail = false
    public func setGrub(default value: String? = "saved", recordfailTimeout: String? = nil, abstraction: String = "", fs: String = "ext2", recordfail: Bool = false) {
        grubDefault = value
        self.recordfailTimeout = recordfailTimeout
        bootAbstraction = abstraction
        bootFS = fs
        self.recordfail = recordfail
    }
    var grubSafetyText: String {
        "@@rollctl-file grub-safety\nlayout \(flavour == .rhel ? "grub2" : "grub")\ndefaults ok\n" + (grubDefault.map { "set GRUB_DEFAULT=\($0)\n" } ?? "")
            + (recordfailTimeout.map { "set GRUB_RECORDFAIL_TIMEOUT=\($0)\n" } ?? "")
            + "probe abstraction ok\nabstraction \(bootAbstraction)\nprobe fs ok\nfs \(bootFS)\nenv ok\n" + (recordfail ? "env recordfail=1\n" : "") + "end\n"
    }

    /// Logins are refused (`auth_failed`) until this moment: a host whose sshd still answers
    /// while it goes down, or one whose keys are really gone (a far-off moment).
    public private(set) var refusesLoginsUntil: Date?
    public func refuseLogins(for d: Duration) { refusesLoginsUntil = clock.after(d) }

    public nonisolated func run(_ command: String, timeout: Duration) async throws -> HostCommandResult {
        try await execute(command)
    }

    /// How many times the orchestrator closed its connection to this host.
    public private(set) var closes = 0
    public func close() async { closes += 1 }

    /// Files uploaded to the host (`kernel.packages`), by path: their SHA-256 as the host's
    /// `sha256sum` would print it.
    public private(set) var files: [String: String] = [:]
    /// Uploads received, and the `dpkg -i` commands run (each an install).
    public private(set) var uploads = 0
    public private(set) var installs: [String] = []
    /// Uploads land damaged (a bad disk): the host's checksum is not the file's.
    public private(set) var corruptsUploads = false
    public func setCorruptsUploads(_ on: Bool) { corruptsUploads = on }

    public func upload(file localPath: String, to remotePath: String, pacer: TransferPacer?,
                       progress: (@Sendable (UInt64, UInt64) -> Void)?) async throws -> UploadResult {
        _ = try execute("true")
        let d = try await ShippedPackage.digest([KernelPackage(path: localPath, name: "upload", kind: .deb, size: 0)])[0]
        progress?(0, d.size)
        progress?(d.size, d.size)
        files[remotePath] = corruptsUploads ? String(repeating: "0", count: 64) : d.sha256
        uploads += 1
        return UploadResult(bytes: d.size, elapsed: .milliseconds(1))
    }

    /// The commands of `PackageCommands`, on `files`.
    func packageCommand(_ command: String) -> HostCommandResult? {
        func ok(_ out: String = "") -> HostCommandResult { HostCommandResult(stdout: out) }
        func between(_ a: String, _ b: String) -> String? {
            guard let r = command.range(of: a), let e = command[r.upperBound...].range(of: b) else { return nil }
            return String(command[r.upperBound..<e.lowerBound])
        }
        func words(_ s: Substring) -> [String] { s.split(separator: " ").map { unquote($0) } }
        if command.hasPrefix("umask 077; mkdir -m 0700 ") {
            guard let dir = between("mkdir -m 0700 ", " 2>/dev/null").map({ unquote(Substring($0)) }), let list = between("for f in ", "; do") else { return nil }
            return ok(words(Substring(list)).compactMap { n in files[dir + "/" + n].map { "\($0)  \(n)\n" } }.joined())
        }
        if command.hasPrefix("sha256sum -- ") {
            let path = unquote(command.dropFirst("sha256sum -- ".count))
            guard let sum = files[path] else { return HostCommandResult(stdout: "", stderr: "sha256sum: \(path): No such file or directory\n", exitStatus: 1) }
            return ok("\(sum)  \(path)\n")
        }
        if command.hasPrefix("mv -f -- ") {
            let w = words(command.dropFirst("mv -f -- ".count))
            guard w.count == 2, let sum = files.removeValue(forKey: w[0]) else { return HostCommandResult(stdout: "", stderr: "mv: cannot stat\n", exitStatus: 1) }
            files[w[1]] = sum
            return ok()
        }
        if command.hasPrefix("rm -f -- ") { files.removeValue(forKey: unquote(command.dropFirst("rm -f -- ".count))); return ok() }
        if command.hasPrefix("rm -rf -- ") {
            let dir = unquote(command.dropFirst("rm -rf -- ".count))
            files = files.filter { !$0.key.hasPrefix(dir + "/") }
            return ok()
        }
        if command.hasPrefix("DEBIAN_FRONTEND=noninteractive dpkg -i ") {
            let w = words(command.dropFirst("DEBIAN_FRONTEND=noninteractive dpkg -i ".count))
            guard !w.isEmpty, w.allSatisfy({ files[$0] != nil }) else { return HostCommandResult(stdout: "", stderr: "dpkg: error: cannot access archive\n", exitStatus: 2) }
            installs.append(command)
            return ok()
        }
        return nil
    }

    public func setRekeyAtReboot(_ on: Bool) { rekeyAtReboot = on }
    public func setHangsOn(_ release: String?) { hangsOn = release }
    public func setLeak(on release: String?, bytesPerSecond: Double = 0) { leak = release.map { ($0, bytesPerSecond) } }
    public func setOOMKills(_ count: UInt64, on release: String) { oomKillsOn[release] = count }
    public func setIgnoresOneShot(_ on: Bool) { ignoresOneShot = on }
    public func setFailing(_ prefixes: [String]) { failing = prefixes }

    /// `/proc/meminfo` now: `meminfo` with SUnreclaim (and Slab) grown by the leak, if the
    /// running release leaks.
    func currentMeminfo() -> String {
        guard let leak, leak.release == release else { return Self.meminfo }
        let up = clock.now.timeIntervalSince(bootedAt)
        let grown = 300000 + UInt64(max(0, up * leak.bytesPerSecond / 1024))
        return "MemTotal:       65536000 kB\nMemFree:        30000000 kB\nMemAvailable:   50000000 kB\nSlab:             \(600000 + grown) kB\nSReclaimable:     600000 kB\nSUnreclaim:       \(grown) kB\n"
    }

    private func booted() {
        bootID = UUID().uuidString.lowercased()
        bootedAt = clock.now
        boots.append(release)
    }

    /// A hard reset: GRUB boots the saved default (a one-shot entry was used up by the hung boot).
    public func powerCycle() {
        release = kernel(for: savedEntry) ?? release
        booted()
        down = false
    }

    func execute(_ command: String) throws -> HostCommandResult {
        commands += 1
        if down { throw SSHError(.connectRefused, host: hostName, "connection refused (the host is down)") }
        if let until = refusesLoginsUntil, clock.now < until {
            throw SSHError(.authFailed, host: hostName, "authentication as root failed (simulated)")
        }
        if rekeyed { throw SSHError(.hostKeyMismatch, host: hostName, "the host key changed (ssh-ed25519 SHA256:simhost-new)") }
        func ok(_ out: String = "") -> HostCommandResult { HostCommandResult(stdout: out) }
        if command.hasPrefix("export ROLLCTL_") {
            hooks.append((command, reboots))
            let fails = command.contains("FAIL") || failing.contains { command.hasPrefix($0) }
            return fails ? HostCommandResult(stdout: "draining\n", stderr: "hook: simulated failure\n", exitStatus: 1) : ok("done\n")
        }
        if failing.contains(where: { command.hasPrefix($0) }) {
            return HostCommandResult(stdout: "", stderr: "\(command.prefix(40)): simulated failure\n", exitStatus: 1)
        }
        switch command {
        case PlanSurvey.command, PlanSurvey.applyCommand:
            // The survey: the facts, then /boot's free bytes, (the dry-run's: GRUB's checks,) then what tells the bootloader.
            return ok(try execute(HostFacts.command).stdout + "@@rollctl-file boot-free\n4000000000\n"
                      + (command == PlanSurvey.command ? grubSafetyText : "") + "@@rollctl-file bootloader\n" + bootFilesText)
        case GrubSafety.command: return ok(grubSafetyText)
        case HostFacts.command:
            let files: [(String, String)] = [
                ("/proc/sys/kernel/osrelease", release + "\n"),
                ("/proc/sys/kernel/random/boot_id", bootID + "\n"),
                ("/proc/uptime", "1234.5 2000.0\n"),
                ("/proc/meminfo", currentMeminfo()),
                ("/proc/vmstat", "nr_free_pages 7500000\noom_kill \(oomKillsOn[release] ?? 0)\n"),
            ]
            return ok(files.map { "@@rollctl-file \($0.0)\n\($0.1)" }.joined())
        case GrubDriver.readConfig where flavour == .debian: return ok(grubCfg)
        case GrubBLSDriver.listEntries where flavour == .rhel: return ok(grubbyInfo())
        case GrubBLSDriver.clearNextEntry where flavour == .rhel: nextEntry = nil; return ok()
        case HostCommands.bootFree: return ok("4000000000\n")
        case GrubDriver.clearNextEntry where flavour == .debian: nextEntry = nil; return ok()
        case SystemdBootDriver.listEntries where flavour == .systemdBoot: return ok(bootctlList())
        case SystemdBootDriver.isInstalled where flavour == .systemdBoot: return ok("@@rollctl-file systemd-boot\nyes\n")
        case SystemdBootDriver.clearNextEntry where flavour == .systemdBoot: nextEntry = nil; return ok()
        case "cat /proc/sys/kernel/random/boot_id": return ok(bootID + "\n")
        case "cat /proc/sys/kernel/osrelease": return ok(release + "\n")
        case "true": return ok()
        case "systemctl reboot":
            // GRUB's choice at boot: the one-shot entry once, else the saved default.
            let spec = (ignoresOneShot ? nil : nextEntry) ?? savedEntry
            nextEntry = nil
            release = kernel(for: spec) ?? release
            booted()
            reboots += 1
            if rekeyAtReboot { rekeyed = true }
            if let h = hangsOn, h == release { down = true; nextEntry = nil }
            onReboot?(hostName)
            return ok()
        case HostLease.readCommand:
            return ok(leaseText ?? "")
        default:
            if command.hasPrefix("L=\(HostLease.directory);") { return ok(lease(command)) }
            if let r = packageCommand(command) { return r }
            if flavour == .rhel { return rhel(command) }
            if flavour == .systemdBoot, command.hasPrefix("bootctl set-default ") {
                savedEntry = unquote(command.dropFirst("bootctl set-default ".count))
                if savedEntry == "" { savedEntry = nil }
                return ok()
            }
            if flavour == .systemdBoot, command.hasPrefix("bootctl set-oneshot ") {
                nextEntry = unquote(command.dropFirst("bootctl set-oneshot ".count))
                if nextEntry == "" { nextEntry = nil }
                return ok()
            }
            if command.hasPrefix("DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-") { return ok() }
            if flavour == .systemdBoot { return HostCommandResult(stdout: "", stderr: "sh: \(command.prefix(40)): not found\n", exitStatus: 127) }
            if command.hasPrefix("grub-set-default ") { savedEntry = unquote(command.dropFirst("grub-set-default ".count)); return ok() }
            if command.hasPrefix("grub-reboot ") { nextEntry = unquote(command.dropFirst("grub-reboot ".count)); return ok() }
            return HostCommandResult(stdout: "", stderr: "sh: \(command.prefix(40)): not found\n", exitStatus: 127)
        }
    }

    /// What GRUB boots for a `default` value: Debian's menu path, or a rhel host's entry id
    /// (an id naming nothing: the first entry).
    func kernel(for spec: String?) -> String? {
        if flavour == .systemdBoot {
            // An entry id naming nothing (or none): the entry that sorts first, the newest kernel.
            return kernels.first { spec == "\(machineID)-\($0).conf" } ?? kernels.max { Grub.versionLess($0, $1) }
        }
        guard flavour == .rhel else { return Grub.kernelFor(default: spec, menu: menu).kernel }
        return kernels.first { spec == "\(machineID)-\($0)" } ?? kernels.first
    }

    /// `grubby --info=ALL` as RHEL 9 prints it, one entry per kernel in menu order.
    func grubbyInfo() -> String {
        kernels.enumerated().map { i, k in
            "index=\(i)\nkernel=\"/boot/vmlinuz-\(k)\"\nargs=\"ro\"\nroot=\"/dev/mapper/rhel-root\"\ninitrd=\"/boot/initramfs-\(k).img\"\n"
                + "title=\"Red Hat Enterprise Linux (\(k)) 9.4 (Plow)\"\nid=\"\(machineID)-\(k)\"\n"
        }.joined()
    }

    /// `bootctl list --json=short` as systemd 257 prints it (the keys rollctl reads), newest first.
    func bootctlList() -> String {
        "[" + kernels.sorted { Grub.versionLess($1, $0) }.map { k in
            #"{"type":"type1","source":"esp","id":"\#(machineID)-\#(k).conf","version":"\#(k)","linux":"/\#(machineID)/\#(k)/linux","isSelected":\#(k == release)}"#
        }.joined(separator: ",") + "]"
    }

    /// A rhel host's package and bootloader commands; anything else exits 127.
    func rhel(_ command: String) -> HostCommandResult {
        func release(after prefix: String) -> String? {
            command.hasPrefix(prefix) ? unquote(command.dropFirst(prefix.count)) : nil
        }
        if let r = release(after: "dnf install -y kernel-") {
            guard kernels.contains(r) else { return HostCommandResult(stdout: "", stderr: "Error: Unable to find a match: kernel-\(r)\n", exitStatus: 1) }
            savedEntry = "\(machineID)-\(r)"   // kernel-install with UPDATEDEFAULT=yes
            return HostCommandResult(stdout: "Complete!\n")
        }
        if let e = release(after: "grub2-set-default ") { savedEntry = e; return HostCommandResult(stdout: "") }
        if let e = release(after: "grub2-reboot ") { nextEntry = e; return HostCommandResult(stdout: "") }
        if let path = release(after: "grubby --set-default ") {
            guard let r = kernels.first(where: { path == "/boot/vmlinuz-\($0)" }) else {
                return HostCommandResult(stdout: "", stderr: "The param \(path) is incorrect\n", exitStatus: 1)
            }
            savedEntry = "\(machineID)-\(r)"
            return HostCommandResult(stdout: "")
        }
        return HostCommandResult(stdout: "", stderr: "bash: line 1: \(command.prefix(40)): command not found\n", exitStatus: 127)
    }

    /// The lease commands' semantics (take, release, force-release), on `leaseText`.
    func lease(_ command: String) -> String {
        // The command's `; R='…'; J='…'; D='…'` assignments, found on its bytes (bench-core runs this
        // for every host several times: a string search per key cost a tenth of its CPU).
        let bytes = Array(command.utf8)
        func value(_ key: String) -> String? {
            guard let r = bytes.firstRange(of: Array("; \(key)=".utf8)) else { return nil }
            let rest = bytes[r.upperBound...]
            let end = rest.firstIndex(of: UInt8(ascii: ";")) ?? rest.endIndex
            let word = String(decoding: rest[..<end], as: UTF8.self)
            return word.hasPrefix("'") ? unquote(Substring(word)) : String(word.prefix { $0 != " " })
        }
        let now = Int(Date().timeIntervalSince1970)
        let held = leaseText.flatMap(HostLease.Holder.parse)
        if command.hasSuffix("rm -f \"$L/lease\" && echo RELEASED") { leaseText = nil; return "RELEASED\n" }
        let rollout = value("R") ?? "?", journal = value("J") ?? "?"
        if command.hasSuffix("echo NOT-OURS; fi") {
            if let h = held, h.rollout == rollout, h.journal == journal { leaseText = nil; return "RELEASED\n" }
            return "NOT-OURS\n"
        }
        var out = ""
        if let h = held, !(h.rollout == rollout && h.journal == journal) {
            if h.expires > now { return "HELD\n" + (leaseText ?? "") }
            out = "EXPIRED\n" + (leaseText ?? "") + "\nEND\n"
        }
        leaseText = "rollout=\(rollout)\njournal=\(journal)\ndriver=\(value("D") ?? "?")\nsince=\(held?.since ?? now)\nexpires=\(now + 6 * 3600)\n"
        return out + "TAKEN\n"
    }

    /// Puts a lease of another rollout on the host (a second admin's journal).
    public func setLease(_ text: String?) { leaseText = text }

    /// Undoes `shellQuote` (one single-quoted word, or a bare word).
    nonisolated func unquote(_ s: Substring) -> String {
        guard s.hasPrefix("'"), s.hasSuffix("'"), s.count >= 2 else { return String(s) }
        return String(s.dropFirst().dropLast()).replacingOccurrences(of: "'\\''", with: "'")
    }

    public func summary() -> (release: String, saved: String?, reboots: Int, commands: Int) { (release, savedEntry, reboots, commands) }
}

