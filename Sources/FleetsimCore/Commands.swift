import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum FleetsimMain {
    public static func main() {
        let args = CommandLine.arguments
        // Shims call `fleetsim shim HOSTDIR NAME ARGS...`: raw argv, no option parsing.
        if args.count >= 4 && args[1] == "shim" {
            exit(Shims.run(hostDir: args[2], name: args[3], args: Array(args.dropFirst(4))))
        }
        FleetsimCommand.main()
    }
}

func fail(_ e: FleetsimError) -> ExitCode {
    FileHandle.standardError.write(Data("fleetsim: \(e.message)\n".utf8))
    return ExitCode(e.exitCode)
}

func requireRoot(_ what: String) throws {
    if geteuid() != 0 {
        throw fail(FleetsimError("`fleetsim \(what)` needs root (it creates PID/mount namespaces, runs sshd and sets firewall rules); run it as root, e.g. with sudo", exitCode: 2))
    }
}

struct DirOption: ParsableArguments {
    @Option(name: .long, help: "Fleet directory.")
    var dir: String = ".fleetsim"
    var absolute: String { absolutePath(dir) }
}

public struct FleetsimCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "fleetsim",
        abstract: "A simulated fleet of Linux hosts on loopback: real sshd, fake kernels, GRUB, reboots, faults.",
        subcommands: [Up.self, Down.self, Status.self, SetCommand.self, SSH.self, Supervise.self])
    public init() {}
}

struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create and boot a fleet (cleans a previous one in DIR first).")
    @Option(help: "Number of hosts.") var hosts: Int
    @Option(help: "Number of racks (labels r1..rR, round-robin).") var racks: Int = 4
    @Option(help: "Number of clusters (labels c1..cC, round-robin).") var clusters: Int = 1
    @OptionGroup var dirOption: DirOption
    @Option(help: "Scenario YAML (default: the built-in socket.c leak story).") var scenario: String?
    @Option(name: .customLong("ssh-port"), help: "sshd port on every host address.") var sshPort: Int = 2222
    @Option(name: .customLong("base-address"), help: "First host address (127/8).") var baseAddress: String = "127.0.1.1"
    @Option(name: .customLong("name-prefix"), help: "Host name prefix.") var namePrefix: String = "web-"
    @Option(help: "Seed for generated data (customers).") var seed: UInt64 = 42
    @Option(help: "Seconds to wait for every host to be up (0: do not wait).") var wait: Double = 120
    @Option(help: "Host flavours (\(Flavour.allCases.map(\.rawValue).joined(separator: ", "))): one for every host (rhel), or flavour:count,... in host order (debian:2,rhel:3,systemd-boot:2; the rest debian).")
    var flavours: String?

    func run() throws {
        try requireRoot("up")
        guard (1...5000).contains(hosts) else { throw fail(FleetsimError("--hosts must be 1...5000", exitCode: 2)) }
        guard (1...65535).contains(sshPort), sshPort != 80, sshPort != Int(NodeMetrics.port) else { throw fail(FleetsimError("--ssh-port must be a port other than 80 and 9100", exitCode: 2)) }
        let dir = dirOption.absolute
        let t0 = monotonic()
        do {
            let flavourList = try flavours.map { try Setup.parseFlavours($0, hosts: hosts) } ?? []
            if fileExists(dir) {
                if fileExists(Layout(dir: dir).marker) || fileExists(Layout(dir: dir).fleetJSON) {
                    print("fleetsim: cleaning the previous fleet in \(dir)")
                    try Teardown.run(dir: dir, quiet: true)
                } else if let c = try? FileManager.default.contentsOfDirectory(atPath: dir), !c.isEmpty {
                    throw FleetsimError("\(dir) exists and is not a fleetsim directory; not touching it", exitCode: 2)
                }
            }
            let addrs = try hostAddresses(base: baseAddress, count: hosts)
            for a in addrs {
                for port in [sshPort, 80, Int(NodeMetrics.port)] {
                    let (fd, err) = SiteServer.listen(address: a, port: UInt16(port))
                    if let fd { close(fd) } else {
                        throw FleetsimError("\(a):\(port) is taken (\(err ?? "")); another fleet on these addresses? use --base-address or --ssh-port", exitCode: 2)
                    }
                }
            }
            let opts = UpOptions(hosts: hosts, racks: racks, clusters: clusters, dir: dir, scenarioPath: scenario.map(absolutePath),
                                 sshPort: sshPort, baseAddress: baseAddress, namePrefix: namePrefix, seed: seed, flavours: flavourList)
            let fleet = try Setup.create(opts, binary: selfExecutable())
            let tSetup = monotonic() - t0
            let L = Layout(dir: dir)
            let supervisor = try spawnDetached(fleet.binary, ["supervise", "--dir", dir], logPath: L.supervisorLog)
            // Recorded here as well as by the supervisor itself, so a `down` right after
            // `up --wait 0` finds it even if it has not got that far.
            if let r = supervisor.record("supervisor") { ProcessLedger.append(dir: dir, r) }
            print(String(format: "fleetsim: wrote %d hosts to %@ in %.1fs; supervisor started", hosts, dir, tSetup))
            if wait <= 0 { return }
            let deadline = monotonic() + wait
            var last: FleetStatus? = nil
            while monotonic() < deadline {
                usleep(200_000)
                if let st = Status.load(dir: dir) {
                    last = st
                    if st.hosts.count == hosts && st.hosts.allSatisfy({ $0.state == "up" || $0.phase == "hung" || $0.phase == "panicking" }) {
                        print(String(format: "fleetsim: %d hosts up in %.1fs — inventory: %@", hosts, monotonic() - t0, L.inventory))
                        return
                    }
                }
            }
            let notUp = last?.hosts.filter { $0.state != "up" }.map(\.name) ?? []
            throw FleetsimError("not all hosts up after \(Int(wait))s (\(notUp.count) not up: \(notUp.prefix(10).joined(separator: ", "))); see \(L.supervisorLog)")
        } catch let e as FleetsimError {
            throw fail(e)
        }
    }
}

struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop the fleet and remove everything it made (processes, namespaces, firewall rules, DIR).")
    @OptionGroup var dirOption: DirOption
    @Flag(help: "Keep DIR (logs, boots.log) after stopping.") var keep = false

    func run() throws {
        try requireRoot("down")
        do { try Teardown.run(dir: dirOption.absolute, quiet: false, keepDir: keep) } catch let e as FleetsimError { throw fail(e) }
    }
}

public enum Teardown {
    /// Stops the supervisor and every host process, removes firewall rules and (unless keepDir) DIR.
    ///
    /// Signals only processes this fleet's fleetsim started and recorded in DIR/run/processes,
    /// and only while pid and start time still match (`ProcessRecord`): nothing is found by name
    /// or command line, so another process that merely looks like a fleetsim process (or got a
    /// recorded pid after the recorded one ended) is never touched.
    public static func run(dir: String, quiet: Bool, keepDir: Bool = false) throws {
        let L = Layout(dir: dir)
        var notes: [String] = []
        let records = ProcessLedger.load(dir: dir)
        let hostsRunning = records.filter { $0.role != "supervisor" && $0.state == .running }

        // 1. The supervisor: SIGTERM, and it stops its hosts (SIGKILL after 8 s).
        for s in records where s.role == "supervisor" && s.state == .running {
            s.signal(SIGTERM)
            if s.waitGone(seconds: 8) {
                notes.append("supervisor stopped (pid \(s.pid))")
            } else {
                s.signal(SIGKILL)
                _ = s.waitGone(seconds: 2)
                notes.append("supervisor killed (pid \(s.pid), still running 8 s after SIGTERM)")
            }
        }
        let stoppedBySupervisor = hostsRunning.filter { $0.state != .running }
        if !stoppedBySupervisor.isEmpty {
            notes.append("it stopped \(count(stoppedBySupervisor.count, "host")) (\(list(stoppedBySupervisor)))")
        }

        // 2. Hosts still running (no supervisor, or it died): SIGKILL to the host's PID 1 (the child
        //    of its `unshare`) ends every process of the host; then to the `unshare`. Read again:
        //    a supervisor killed mid-reboot may have recorded a host since.
        let recorded = ProcessLedger.load(dir: dir)
        let hosts = recorded.filter { $0.role != "supervisor" }
        let reused = recorded.filter { $0.state == .reused }
        var killed: [ProcessRecord] = []
        for h in hosts where h.state == .running {
            for initProcess in h.children() { initProcess.signal(SIGKILL) }
            h.signal(SIGKILL)
            killed.append(h)
        }
        if !killed.isEmpty {
            let gone = killed.filter { $0.waitGone(seconds: 5) }
            notes.append("killed \(count(gone.count, "host")) left running (\(list(gone)))")
            let stuck = killed.filter { $0.state == .running }
            if !stuck.isEmpty { notes.append("still running after SIGKILL: \(list(stuck))") }
        }
        if !reused.isEmpty {
            notes.append("left alone \(count(reused.count, "recorded pid")) now used by another process (\(list(reused)))")
        }
        // Firewall rules of this fleet.
        let tag = "fleetsim:" + String(format: "%08x", Setup.djb2(dir))
        let rules = runProgram("/usr/sbin/iptables", ["-w", "-S", "INPUT"])
        var removed = 0
        if rules.status == 0 {
            for line in rules.output.split(separator: "\n") where line.contains(tag) && line.hasPrefix("-A ") {
                let args = ["-w", "-D"] + line.dropFirst(3).split(separator: " ").map(String.init)
                if runProgram("/usr/sbin/iptables", args).status == 0 { removed += 1 }
            }
        }
        if removed > 0 { notes.append("\(removed) firewall rules removed") }
        // Mounts never leave the host namespaces; check anyway.
        let needle = dir.hasSuffix("/") ? dir : dir + "/"
        if let mounts = readFile("/proc/mounts") {
            for line in mounts.split(separator: "\n") {
                let f = line.split(separator: " ")
                if f.count > 1, f[1].hasPrefix(needle) || f[0].hasPrefix(needle) {
                    runProgram("/bin/umount", ["-l", String(f[1])])
                    notes.append("unmounted \(f[1])")
                }
            }
        }
        if !keepDir, let shm = Setup.shmDir(dir: dir), fileExists(shm) {
            try? FileManager.default.removeItem(atPath: shm)
        }
        if !keepDir && fileExists(dir) {
            if fileExists(L.marker) || fileExists(L.fleetJSON) {
                try? FileManager.default.removeItem(atPath: dir)
                if fileExists(dir) { runProgram("/bin/rm", ["-rf", dir]) }
                notes.append("removed \(dir)")
            } else {
                notes.append("\(dir) is not a fleetsim directory; left alone")
            }
        }
        if !quiet { print("fleetsim down: " + (notes.isEmpty ? "nothing to do" : notes.joined(separator: "; "))) }
    }

    static func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

    /// "web-001 pid 123, web-002 pid 124, ... and 3 more".
    static func list(_ rs: [ProcessRecord]) -> String {
        let shown = rs.prefix(8).map { "\($0.role.hasPrefix("host ") ? String($0.role.dropFirst(5)) : $0.role) pid \($0.pid)" }
        return shown.joined(separator: ", ") + (rs.count > 8 ? " and \(rs.count - 8) more" : "")
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show each host: state, kernel, boots, SUnreclaim, oom_kill, test site.")
    @OptionGroup var dirOption: DirOption
    @Flag(help: "Print JSON.") var json = false

    static func load(dir: String) -> FleetStatus? {
        guard let d = FileManager.default.contents(atPath: Layout(dir: dir).statusJSON) else { return nil }
        let dec = JSONDecoder()
        return try? dec.decode(FleetStatus.self, from: d)
    }

    func run() throws {
        let dir = dirOption.absolute
        guard var st = Status.load(dir: dir) else {
            throw fail(FleetsimError("no fleet status in \(dir); is a fleet up? (`fleetsim up`)"))
        }
        let alive = ProcessLedger.runningSupervisor(dir: dir)?.pid == st.supervisorPid
        if !alive {
            for i in st.hosts.indices { st.hosts[i].state = "down"; st.hosts[i].phase = "no-supervisor" }
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .prettyPrinted]
            print(String(decoding: try enc.encode(st), as: UTF8.self))
            return
        }
        var rows = [["HOST", "ADDRESS", "STATE", "KERNEL", "BOOTS", "UPTIME", "SUNRECLAIM", "OOM", "SITE", "SSHD"]]
        for h in st.hosts {
            let state = h.state == h.phase || h.state == "up" && h.phase == "up" ? h.state : "\(h.state) (\(h.phase))"
            rows.append([h.name, h.address, state + (h.dropped ? " [dropped]" : ""), h.kernel, String(h.bootCount),
                         h.state == "up" ? formatDuration(h.uptime.rounded()) : "-",
                         h.state == "up" ? String(format: "%.1f MiB", Double(h.sunreclaimKiB) / 1024) : "-",
                         h.state == "up" ? String(h.oomKill) : "-", h.site, h.sshd])
        }
        var widths = [Int](repeating: 0, count: rows[0].count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        for r in rows {
            print(r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        let up = st.hosts.filter { $0.state == "up" }.count
        let booting = st.hosts.filter { $0.state == "booting" }.count
        print("\(st.hosts.count) hosts: \(up) up, \(booting) booting, \(st.hosts.count - up - booting) down" + (alive ? "" : " (supervisor not running)"))
    }
}

struct SetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Change a running host (faults, behaviour). HOST is a name, an address, a comma list or `all`.",
        discussion: """
        Behaviour keys (kept across the host's reboots; `key=` removes one):
          site=ok|refuse|reset|timeout|http500
          site_fail_fraction=0..1   site_fail_as=reset|http500|timeout
          sunreclaim_base=SIZE   sunreclaim_growth_per_min=SIZE
          sunreclaim_noise=SIZE  oom_per_min=N
          boot_delay=DUR  boot_jitter=DUR  panic=BOOL  panic_delay=DUR
          never_return=BOOL  boot_full=BOOL
          rekey_at_boot=BOOL   (a new SSH host key at the next boot, as after a reinstall)
          boot_abstraction=WORDS  boot_fs=WORD   (what grub-probe (grub2-probe) says /boot/grub is on: lvm,
                               diskfilter,mdraid1x, cryptodisk…; btrfs, zfs; default none and ext2)
        Host files (debian; changed now, as an admin would):
          grub_default=VALUE  grub_recordfail_timeout=N   (a line of /etc/default/grub; empty: none)
          recordfail=BOOL      (Ubuntu's recordfail=1 in /boot/grub/grubenv)
        Actions (now):
          sshd=stop[:DUR]|start   drop=DUR|on|off   power=cycle|off|on
        Example: fleetsim set web-003 site=reset oom_per_min=2
        """)
    @OptionGroup var dirOption: DirOption
    @Argument(help: "Host name, address, comma-separated list, or all.") var host: String
    @Argument(help: "key=value settings.") var settings: [String]

    func run() throws {
        try requireRoot("set")
        let dir = dirOption.absolute
        do {
            let fleet = try FleetConfig.load(dir: dir)
            let targets = host == "all" ? ["all"] : host.split(separator: ",").map(String.init)
            for t in targets where t != "all" && fleet.host(named: t) == nil {
                throw FleetsimError("no host \(t) in this fleet", exitCode: 2)
            }
            guard !settings.isEmpty else { throw FleetsimError("nothing to set (give key=value)", exitCode: 2) }
            var lines: [String] = []
            for kv in settings {
                guard let eq = kv.firstIndex(of: "=") else { throw FleetsimError("'\(kv)' is not key=value", exitCode: 2) }
                let k = String(kv[..<eq]), v = String(kv[kv.index(after: eq)...])
                try validate(key: k, value: v)
                lines.append("\(k)=\(v)")
            }
            guard ProcessLedger.runningSupervisor(dir: dir) != nil else {
                throw FleetsimError("the fleet's supervisor is not running (DIR \(dir))")
            }
            var paths: [String] = []
            for t in targets {
                let name = t == "all" ? "all" : fleet.host(named: t)!.name
                paths.append(try Shims.postRequest(dir: dir, kind: "set", body: ([name] + lines).joined(separator: "\n") + "\n"))
            }
            let deadline = monotonic() + 15
            while paths.contains(where: fileExists) {
                if monotonic() > deadline { throw FleetsimError("the supervisor did not take the request within 15s") }
                usleep(20_000)
            }
            print("fleetsim: \(host): " + lines.joined(separator: " "))
        } catch let e as FleetsimError {
            throw fail(e)
        }
    }

    func validate(key: String, value: String) throws {
        switch key {
        case "sshd":
            let parts = value.split(separator: ":", maxSplits: 1).map(String.init)
            guard ["stop", "start"].contains(parts.first ?? ""), parts.count == 1 || (parts[0] == "stop" && parseDuration(parts[1]) != nil) else {
                throw FleetsimError("sshd: expected stop, stop:DURATION or start", exitCode: 2)
            }
        case "drop":
            guard ["on", "off", "true", "false"].contains(value) || parseDuration(value) != nil else {
                throw FleetsimError("drop: expected a duration (20s), on or off", exitCode: 2)
            }
        case "power":
            guard ["on", "off", "cycle"].contains(value) else { throw FleetsimError("power: expected on, off or cycle", exitCode: 2) }
        case "boot_full", "rekey_at_boot", "recordfail":
            guard ["true", "false", ""].contains(value) else { throw FleetsimError("\(key): expected true or false", exitCode: 2) }
        case "boot_abstraction", "boot_fs":
            guard value.count <= 64, value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_-,".contains($0)) }), key == "boot_abstraction" || !value.contains(",") else {
                throw FleetsimError("\(key): expected \(key == "boot_fs" ? "a file system name (btrfs)" : "abstraction names, comma-separated (lvm or diskfilter,mdraid1x)")", exitCode: 2)
            }
        case "grub_default", "grub_recordfail_timeout":
            guard value.count <= 128, value.allSatisfy({ $0.isASCII && !$0.isNewline && $0 != "\0" }), key == "grub_default" || value.isEmpty || Int(value) != nil else {
                throw FleetsimError("\(key): expected \(key == "grub_default" ? "one line of ASCII (saved, 0)" : "a number of seconds (-1: forever)")", exitCode: 2)
            }
        default:
            var b = Behaviour()
            if value.isEmpty {
                guard Behaviour.keys.contains(key) || key == "never_return" else { throw unknown(key) }
                return
            }
            if !(try b.set(key: key, value: value)) { throw unknown(key) }
        }
    }

    func unknown(_ key: String) -> FleetsimError {
        FleetsimError("unknown key '\(key)'; known: \((Behaviour.keys + ["boot_full", "rekey_at_boot", "boot_abstraction", "boot_fs", "grub_default", "grub_recordfail_timeout", "recordfail", "sshd", "drop", "power"]).joined(separator: ", "))", exitCode: 2)
    }
}

struct SSH: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Log in to a host (or run a command) with the fleet's key and known_hosts.")
    @OptionGroup var dirOption: DirOption
    @Argument(help: "Host name or address.") var host: String
    @Argument(parsing: .captureForPassthrough, help: "Command to run.") var command: [String] = []

    func run() throws {
        let dir = dirOption.absolute
        let fleet: FleetConfig
        do { fleet = try FleetConfig.load(dir: dir) } catch let e as FleetsimError { throw fail(e) }
        guard let h = fleet.host(named: host) else { throw fail(FleetsimError("no host \(host) in this fleet", exitCode: 2)) }
        let L = Layout(dir: dir)
        let args = ["ssh", "-i", L.clientKey, "-o", "UserKnownHostsFile=" + L.knownHosts, "-o", "StrictHostKeyChecking=yes",
                    "-o", "IdentitiesOnly=yes", "-p", String(fleet.sshPort), "root@" + h.address] + command
        let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        execv("/usr/bin/ssh", argv)
        throw fail(FleetsimError("cannot run /usr/bin/ssh: \(String(cString: strerror(errno)))"))
    }
}

struct Supervise: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the fleet supervisor (started by `up`).", shouldDisplay: false)
    @OptionGroup var dirOption: DirOption

    func run() throws {
        try requireRoot("supervise")
        do {
            let fleet = try FleetConfig.load(dir: dirOption.absolute)
            let rc = Supervisor(fleet: fleet).run()
            if rc != 0 { throw ExitCode(rc) }
        } catch let e as FleetsimError {
            throw fail(e)
        }
    }
}
