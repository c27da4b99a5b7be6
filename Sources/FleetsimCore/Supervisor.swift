import Foundation
#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) var supervisorStopRequested: sig_atomic_t = 0

/// Status of one host as `status` shows it (DIR/status.json).
public struct HostStatus: Codable, Sendable {
    public var name: String
    public var address: String
    public var rack: String
    public var cluster: String
    public var state: String          // up | booting | down
    public var phase: String
    public var kernel: String
    public var bootCount: Int
    public var bootID: String
    public var uptime: Double
    public var sunreclaimKiB: Int
    public var oomKill: Int
    public var site: String
    public var sshd: String
    public var dropped: Bool

    enum CodingKeys: String, CodingKey {
        case name, address, rack, cluster, state, phase, kernel, uptime, site, sshd, dropped
        case bootCount = "boot_count", bootID = "boot_id", sunreclaimKiB = "sunreclaim_kib", oomKill = "oom_kill"
    }
}

public struct FleetStatus: Codable, Sendable {
    public var supervisorPid: Int32
    public var updated: String
    public var hosts: [HostStatus]
    enum CodingKeys: String, CodingKey {
        case supervisorPid = "supervisor_pid", updated, hosts
    }
}

/// One simulated machine.
final class HostRuntime {
    enum Phase {
        case off                                  // powered off / crashed
        case rebootPending(at: Double)            // reboot asked; processes die at `at`
        case panicking(until: Double, kernel: String)
        case hung(kernel: String)                 // kernel never comes up
        case loading(until: Double, kernel: String)
        case starting(since: Double)              // namespace spawned, waiting for sshd to listen
        case up
    }
    let index: Int
    let cfg: HostConfig
    let paths: HostPaths
    var phase: Phase = .off
    var kernel: String
    var bootCount = 0
    var bootID = ""
    var bootAt = 0.0            // monotonic time of this boot (uptime 0)
    var uptimeOffset = 0.0
    var ns: SpawnedProcess?     // the `unshare` process of this boot
    var sunreclaim = 0.0
    var oom = 0.0
    var noise = 0.0
    var snapshot: ProcSnapshot?  // what the fake /proc files show now (the node metrics read it too)
    var siteCounts = SiteCounters()
    var live = LiveOverrides()
    var sshdStopped = false
    var sshdStartAt: Double? = nil
    var dropUntil: Double? = nil
    var dropped = false
    var seed: UInt64

    init(index: Int, cfg: HostConfig, paths: HostPaths, kernel: String) {
        self.index = index; self.cfg = cfg; self.paths = paths; self.kernel = kernel
        seed = UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15
    }

    var running: Bool {
        switch phase { case .starting, .up, .rebootPending: return true; default: return false }
    }

    var stateName: String {
        switch phase {
        case .up, .rebootPending: return "up"
        case .starting, .loading, .panicking: return "booting"
        case .off, .hung: return "down"
        }
    }

    var phaseName: String {
        switch phase {
        case .off: return "off"
        case .rebootPending: return "rebooting"
        case .panicking: return "panicking"
        case .hung: return "hung"
        case .loading: return "loading"
        case .starting: return "starting"
        case .up: return "up"
        }
    }
}

/// The per-fleet daemon: boots hosts into PID+mount namespaces, follows GRUB on reboot,
/// evolves the fake /proc files, serves the test sites and applies `set` requests.
public final class Supervisor {
    let fleet: FleetConfig
    let L: Layout
    var hosts: [HostRuntime] = []
    let site = SiteServer()
    let metrics = MetricsServer()
    var lastTick = 0.0
    var lastStatus = 0.0
    var lastRequests = 0.0
    var rng = SystemRandomNumberGenerator()
    /// `unshare` processes killed and not yet reaped (swift-subprocess reaps them).
    var dying: [SpawnedProcess] = []

    public init(fleet: FleetConfig) {
        self.fleet = fleet
        L = Layout(dir: fleet.dir)
        for (i, h) in fleet.hosts.enumerated() {
            let hr = HostRuntime(index: i, cfg: h, paths: HostPaths(L.hostDir(h.name)),
                                 kernel: fleet.scenario.initialKernel(host: h.name))
            hr.live = LiveOverrides.load(hr.paths.live)
            hosts.append(hr)
        }
    }

    func log(_ s: String) {
        let line = "\(isoTime(now())) \(s)\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    func behaviour(_ h: HostRuntime, kernel: String? = nil) -> Behaviour {
        effectiveBehaviour(fleet, host: h.cfg.name, release: kernel ?? h.kernel, live: h.live)
    }

    // MARK: main loop

    public func run() -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        signal(SIGTERM) { _ in supervisorStopRequested = 1 }
        signal(SIGINT) { _ in supervisorStopRequested = 1 }
        signal(SIGHUP, SIG_IGN)
        var lim = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lim)
        lim.rlim_cur = lim.rlim_max
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lim)
        replaceFile(L.supervisorPid, "\(getpid())\n")
        // `up` recorded this process already; a supervisor started some other way records itself.
        if let start = processStartTime(getpid()) {
            let me = ProcessRecord(pid: getpid(), startTime: start, role: "supervisor")
            if !ProcessLedger.load(dir: fleet.dir).contains(me) { ProcessLedger.append(dir: fleet.dir, me) }
        }
        log("supervisor \(getpid()) starting \(hosts.count) hosts")

        // First boot of every host: GRUB picks the default (saved_entry), no boot delay; staggered a little.
        let t0 = monotonic()
        for h in hosts {
            chooseAndLoad(h, at: t0, firstBoot: true)
        }
        while supervisorStopRequested == 0 {
            var fds = site.pollFDs() + metrics.pollFDs()
            let rc = poll(&fds, nfds_t(fds.count), 200)
            if rc > 0 {
                for p in fds where p.revents != 0 {
                    if metrics.owns(p.fd) {
                        metrics.handle(fd: p.fd, page: { self.metricsPage(self.hosts[$0]) })
                    } else {
                        site.handle(fd: p.fd, revents: p.revents, name: { self.hosts[$0].cfg.name },
                                    behaviour: { self.behaviour(self.hosts[$0]) },
                                    answered: { self.hosts[$0].siteCounts.count(status: $1) })
                    }
                }
            }
            let t = monotonic()
            reap()
            if t - lastRequests >= 0.1 { lastRequests = t; processRequests() }
            advancePhases(t)
            if t - lastTick >= 1.0 {
                let dt = lastTick == 0 ? 0 : t - lastTick
                lastTick = t
                evolve(dt: dt)
                site.expire()
                metrics.expire()
            }
            if t - lastStatus >= 1.0 { lastStatus = t; writeStatus() }
        }
        log("supervisor stopping")
        shutdownAll()
        return 0
    }

    func shutdownAll() {
        for h in hosts {
            killNamespace(h)
            closeListeners(h)
            if h.dropped { setDrop(h, on: false) }
            h.phase = .off
        }
        // Give unshare processes a moment to exit (swift-subprocess reaps them).
        let deadline = monotonic() + 3
        while monotonic() < deadline && dying.contains(where: { !$0.hasExited }) {
            usleep(20_000)
        }
        reap()
        writeStatus()
        unlink(L.supervisorPid)
    }

    /// Notices hosts whose `unshare` ended by itself (swift-subprocess reaped it; nothing here
    /// calls waitpid, which would take children from under it).
    func reap() {
        dying.removeAll { $0.hasExited }
        for h in hosts {
            guard let ns = h.ns, let status = ns.termination else { continue }
            h.ns = nil
            unlink(h.paths.nsPid)
            if h.running {
                if case .rebootPending = h.phase {} else {
                    log("\(h.cfg.name): host init exited unexpectedly (status \(status)); host is down")
                    closeListeners(h)
                    h.phase = .off
                }
            }
        }
    }

    // MARK: booting

    /// Runs the boot loader's choice for the next boot and moves the host into loading/panicking/hung.
    func chooseAndLoad(_ h: HostRuntime, at t: Double, firstBoot: Bool = false) {
        guard let choice = h.cfg.flavour == .systemdBoot ? systemdBootChoice(h).map { (kernel: $0, menuWait: 0.0) } : grubChoice(h) else {
            h.phase = .hung(kernel: "none")
            return
        }
        load(h, kernel: choice.kernel, at: t, firstBoot: firstBoot, menuWait: choice.menuWait)
    }

    /// systemd-boot's choice (`SystemdBoot.choose`): the one-shot entry, removed as it is read, else
    /// the default, else the first entry; the variables written back as the firmware leaves them.
    func systemdBootChoice(_ h: HostRuntime) -> String? {
        let vars = SystemdBoot.readVars(h.paths.efiVars)
        let entries = SystemdBoot.entries(esp: h.paths.esp)
        let choice = SystemdBoot.choose(entries: entries, vars: vars, loaderConf: readFile(h.paths.esp + "/loader/loader.conf"))
        SystemdBoot.writeVars(h.paths.efiVars, choice.vars)
        if let note = choice.note { log("\(h.cfg.name): systemd-boot: \(note)") }
        guard let e = choice.entry else {
            log("\(h.cfg.name): systemd-boot found no boot loader entry; host stays down")
            return nil
        }
        return SystemdBoot.release(of: e)
    }

    /// GRUB's choice. Debian: the menu grub-mkconfig wrote into grub.cfg. RHEL: blscfg's menu, one
    /// entry per BLS file, newest first. Both: the 00_header's next_entry/saved_entry logic on grubenv.
    /// `menuWait`: seconds GRUB shows its menu first (Ubuntu's recordfail); nil: the host stays down.
    func grubChoice(_ h: HostRuntime) -> (kernel: String, menuWait: Double)? {
        let rhel = h.cfg.flavour == .rhel
        let envPath = rhel ? h.paths.grub2Env : h.paths.grubEnv
        let env = Grub.readEnv(envPath)
        let cfg = rhel ? "" : readFile(h.paths.grubCfg) ?? ""
        let menu = rhel ? [] : Grub.parseMenu(cfg)
        let entries = rhel ? BLS.entries(bootDir: h.paths.boot) : []
        func kernelFor(_ spec: String?) -> (kernel: String?, matched: Bool) {
            rhel ? BLS.kernelFor(default: spec, entries: entries) : Grub.kernelFor(default: spec, menu: menu)
        }
        // The header's default: saved_entry (GRUB_DEFAULT=saved), else what GRUB_DEFAULT named.
        let headerDefault = Grub.headerDefault(cfg)
        let saved = headerDefault.map { $0 == "${saved_entry}" ? Grub.envValue(env, "saved_entry") : $0 } ?? Grub.envValue(env, "saved_entry")
        var spec = saved
        var bootOnce = false
        if let next = Grub.envValue(env, "next_entry"), !next.isEmpty {
            spec = next
            bootOnce = true
            // GRUB's 00_header: set next_entry= ; save_env next_entry
            try? Grub.setEnv(envPath, "next_entry", "")
        }
        // Ubuntu's header: recordfail=1 left by a boot that did not finish shows the menu for the
        // recordfail timeout (-1: until someone picks an entry, which nobody does on a headless host).
        var menuWait = 0.0
        if h.cfg.flavour == .ubuntu, Grub.envValue(env, "recordfail") == "1", let timeout = Grub.recordfailTimeout(cfg) {
            if timeout < 0 {
                log("\(h.cfg.name): GRUB shows its menu and waits for a key (recordfail=1, GRUB_RECORDFAIL_TIMEOUT=-1); host stays down")
                return nil
            }
            menuWait = Double(timeout)
            if timeout > 0 { log("\(h.cfg.name): GRUB shows its menu for \(timeout)s (recordfail=1)") }
        }
        var (k, matched) = kernelFor(spec)
        if !matched, spec != saved, fleet.scenario.invalidEntryBoots == "saved" {
            // The brief's rule: an invalid one-shot entry falls back to saved_entry (real GRUB: entry 0).
            let fallback = kernelFor(saved)
            if fallback.kernel != nil { k = fallback.kernel }
        }
        guard let kernel = k else {
            log("\(h.cfg.name): GRUB found no bootable entry; host stays down")
            return nil
        }
        if let spec, !spec.isEmpty, !matched {
            log("\(h.cfg.name): GRUB entry '\(spec)' matches nothing; booting \(kernel)")
        }
        if h.cfg.flavour == .ubuntu && !bootOnce {
            // Every Ubuntu entry calls `recordfail` first: recordfail=1 saved, except on a one-shot boot.
            try? Grub.setEnv(envPath, "recordfail", "1")
        }
        return (kernel, menuWait)
    }

    /// Loads `kernel` after `menuWait` seconds at the boot menu: it panics (the machine resets and
    /// the boot loader chooses again), hangs, or comes up.
    func load(_ h: HostRuntime, kernel: String, at t: Double, firstBoot: Bool, menuWait: Double) {
        let b = behaviour(h, kernel: kernel)
        if b.panic == true {
            let delay = menuWait + (b.panicDelay ?? 5)
            log("\(h.cfg.name): kernel \(kernel) panics; machine resets in \(formatDuration(delay))")
            appendBootLog(h, number: "-", bootID: "-", kernel: kernel, result: "panic")
            h.phase = .panicking(until: t + delay, kernel: kernel)
            return
        }
        if b.neverReturns == true {
            log("\(h.cfg.name): kernel \(kernel) hangs during boot; host will not return")
            appendBootLog(h, number: "-", bootID: "-", kernel: kernel, result: "hung")
            h.phase = .hung(kernel: kernel)
            return
        }
        var delay = menuWait
        if !firstBoot {
            let base = b.bootDelay ?? 2
            let j = b.bootJitter ?? 0
            delay += max(0, base + (j > 0 ? Double.random(in: -j...j, using: &rng) : 0))
        }
        h.phase = .loading(until: t + delay, kernel: kernel)
    }

    func advancePhases(_ t: Double) {
        var starting = hosts.reduce(0) { n, h in if case .starting = h.phase { return n + 1 }; return n }
        var listeners: Set<String>? = nil
        for h in hosts {
            switch h.phase {
            case .rebootPending(let at) where t >= at:
                killNamespace(h)
                closeListeners(h)
                chooseAndLoad(h, at: t)
            case .panicking(let until, _) where t >= until:
                chooseAndLoad(h, at: t)
            case .loading(let until, let kernel) where t >= until:
                if starting >= 32 { continue }  // bound the spawn storm at fleet start
                boot(h, kernel: kernel, t: t)
                starting += 1
            case .starting(let since):
                if listeners == nil { listeners = listeningSockets() }
                if listeners!.contains("\(h.cfg.address):\(fleet.sshPort)") || h.sshdStopped || t - since > 30 {
                    if t - since > 30 { log("\(h.cfg.name): sshd not listening after 30s") }
                    else if !h.sshdStopped { log("\(h.cfg.name): up, sshd listening") }   // bench/overhead.sh times boots by it
                    h.phase = .up
                    if h.cfg.flavour == .ubuntu {
                        // grub-common's boot service: the system is up, the boot finished.
                        try? Grub.unsetEnv(h.paths.grubEnv, "recordfail")
                    }
                }
            default: break
            }
            if let at = h.sshdStartAt, t >= at {
                h.sshdStartAt = nil
                startSSHD(h)
            }
            if let until = h.dropUntil, t >= until {
                h.dropUntil = nil
                setDrop(h, on: false)
            }
        }
    }

    /// Brings a host up on `kernel`: new boot id, uptime 0, fresh counters, new namespace.
    func boot(_ h: HostRuntime, kernel: String, t: Double) {
        if h.live.lines.contains(where: { $0.0 == "rekey_at_boot" && $0.1 == "true" }) {
            // A reinstalled host (or a man in the middle): a new host key from this boot on.
            unlink(h.paths.hostKey)
            unlink(h.paths.hostKey + ".pub")
            do {
                try Setup.runParallel([["/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@\(h.cfg.name)", "-f", h.paths.hostKey]], width: 1)
                log("\(h.cfg.name): new host key at this boot (rekey_at_boot)")
            } catch {
                log("\(h.cfg.name): rekey_at_boot: \(error)")
            }
            LiveOverrides.save(h.paths.live, h.live.lines.filter { $0.0 != "rekey_at_boot" })
            h.live = LiveOverrides.load(h.paths.live)
        }
        h.kernel = kernel
        h.bootCount += 1
        h.bootID = randomUUIDLower()
        h.bootAt = t
        h.uptimeOffset = h.bootCount == 1 ? fleet.scenario.initialUptime : 0
        let b = behaviour(h)
        h.sunreclaim = (b.sunreclaimBase ?? 0) + (b.sunreclaimGrowthPerMin ?? 0) * h.uptimeOffset / 60
        h.oom = (b.oomPerMin ?? 0) * h.uptimeOffset / 60
        h.siteCounts = SiteCounters()
        h.sshdStopped = false
        h.sshdStartAt = nil
        rewriteInPlace(h.paths.osrelease, kernel + "\n")
        rewriteInPlace(h.paths.bootID, h.bootID + "\n")
        writeProc(h)
        appendBootLog(h, number: String(h.bootCount), bootID: h.bootID, kernel: kernel, result: "up")
        let args = ["--pid", "--fork", "--kill-child", "--mount", "--propagation", "private", "--mount-proc",
                    "--", "/bin/sh", L.hostInit, h.paths.root]
        let ns: SpawnedProcess
        do {
            ns = try spawnDetached("/usr/bin/unshare", args, logPath: h.paths.consoleLog, newSession: true)
        } catch {
            log("\(h.cfg.name): cannot spawn unshare: \(error)")
            h.phase = .off
            return
        }
        h.ns = ns
        if let r = ns.record("host " + h.cfg.name) { ProcessLedger.append(dir: fleet.dir, r) }
        replaceFile(h.paths.nsPid, "\(ns.pid)\n")
        h.phase = .starting(since: t)
        syncSite(h)
    }

    func appendBootLog(_ h: HostRuntime, number: String, bootID: String, kernel: String, result: String) {
        let line = "\(isoTime(now())) \(number) \(bootID) \(kernel) \(result)\n"
        let fd = open(h.paths.bootsLog, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        if fd >= 0 {
            _ = line.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
            close(fd)
        }
    }

    /// The host's PID 1 (global pid), child of its `unshare`.
    func nsInit(_ h: HostRuntime) -> ProcessRecord? {
        guard let ns = h.ns, !ns.hasExited else { return nil }
        return ns.record("host " + h.cfg.name)?.children().first
    }

    /// Ends every process of the host: SIGKILL to its PID 1 ends the whole PID namespace.
    /// Signals go by pid and start time, since swift-subprocess may reap the `unshare` (and its
    /// pid be reused) at any moment from another thread.
    func killNamespace(_ h: HostRuntime) {
        guard let ns = h.ns else { return }
        if !ns.hasExited, let r = ns.record("host " + h.cfg.name) {
            for initProcess in r.children() { initProcess.signal(SIGKILL) }
            r.signal(SIGKILL)
        }
        h.ns = nil
        dying.append(ns)
        unlink(h.paths.nsPid)
    }

    /// Closes the host's test-site and node-metrics listeners and connections (it went down).
    func closeListeners(_ h: HostRuntime) {
        site.closeAll(host: h.index)
        metrics.closeAll(host: h.index)
    }

    /// The host's node-metrics page now: the snapshot its /proc files show, its boot time
    /// (wall clock minus uptime, whole seconds like /proc/stat's btime) and its site counters.
    func metricsPage(_ h: HostRuntime) -> String? {
        guard h.running, let snap = h.snapshot else { return nil }
        return NodeMetrics.render(NodeMetricsSample(host: h.cfg.name, snapshot: snap, bootTime: now() - uptime(h),
                                                    requests: h.siteCounts.byStatus, resets: h.siteCounts.resets))
    }

    /// Opens or closes the host's test-site listener to match its state and site mode, and its
    /// node-metrics listener to match its state alone.
    func syncSite(_ h: HostRuntime) {
        if h.running, let err = metrics.open(host: h.index, address: h.cfg.address) {
            log("\(h.cfg.name): node metrics: \(err)")
        }
        let want = h.running && (behaviour(h).site ?? .ok) != .refuse
        if want && site.listeners[h.index] == nil {
            let (fd, err) = SiteServer.listen(address: h.cfg.address, port: 80)
            if let fd { site.listeners[h.index] = fd } else if let err { log("\(h.cfg.name): test site: \(err)") }
        } else if !want {
            site.closeListener(host: h.index)
        }
    }

    // MARK: sshd and firewall faults

    /// The host's sshd listener: the child of its PID 1 named sshd (host-init.sh starts it, and
    /// a restarted one, daemonized inside the namespace, is re-parented to PID 1).
    func sshdListeners(_ h: HostRuntime) -> [ProcessRecord] {
        (nsInit(h)?.children() ?? []).filter { processComm($0.pid) == "sshd" }
    }

    func stopSSHD(_ h: HostRuntime) {
        for p in sshdListeners(h) { p.signal(SIGTERM) }
        h.sshdStopped = true
    }

    func startSSHD(_ h: HostRuntime) {
        h.sshdStopped = false
        guard h.running, let initProcess = nsInit(h), sshdListeners(h).isEmpty else { return }
        let r = runProgram("/usr/bin/nsenter", ["-t", "\(initProcess.pid)", "-p", "-m", "--", "/usr/sbin/sshd",
                                                "-f", h.paths.sshdConfig, "-E", h.paths.sshdLog])
        if r.status != 0 { log("\(h.cfg.name): restarting sshd failed: \(r.output)") }
    }

    func setDrop(_ h: HostRuntime, on: Bool) {
        for dirFlag in ["-d", "-s"] {
            let rule = ["INPUT", dirFlag, h.cfg.address, "-m", "comment", "--comment", fleet.tag, "-j", "DROP"]
            if on {
                let r = runProgram("/usr/sbin/iptables", ["-w", "-I"] + rule)
                if r.status != 0 { log("\(h.cfg.name): iptables: \(r.output)") }
            } else {
                while runProgram("/usr/sbin/iptables", ["-w", "-D"] + rule).status == 0 {}
            }
        }
        h.dropped = on
    }

    // MARK: /proc evolution

    func evolve(dt: Double) {
        for h in hosts where h.running {
            let b = behaviour(h)
            h.sunreclaim += (b.sunreclaimGrowthPerMin ?? 0) * dt / 60
            h.sunreclaim = min(h.sunreclaim, fleet.scenario.memTotal * 0.85)
            if let base = b.sunreclaimBase, h.sunreclaim < base { h.sunreclaim = base }
            h.oom += (b.oomPerMin ?? 0) * dt / 60
            let n = b.sunreclaimNoise ?? 0
            h.noise = n > 0 ? Double.random(in: -n...n, using: &rng) : 0
            writeProc(h)
        }
    }

    func uptime(_ h: HostRuntime) -> Double { h.running ? monotonic() - h.bootAt + h.uptimeOffset : 0 }

    func writeProc(_ h: HostRuntime) {
        let snap = ProcSnapshot(memTotal: fleet.scenario.memTotal, sunreclaim: max(0, h.sunreclaim + h.noise),
                                oomKill: Int(h.oom), uptime: uptime(h), seed: h.seed)
        h.snapshot = snap
        rewriteInPlace(h.paths.uptime, ProcFiles.uptime(snap))
        rewriteInPlace(h.paths.meminfo, ProcFiles.meminfo(snap))
        rewriteInPlace(h.paths.vmstat, ProcFiles.vmstat(snap))
    }

    // MARK: status

    func writeStatus() {
        let list = hosts.map { h -> HostStatus in
            let b = behaviour(h)
            var siteMode = (b.site ?? .ok).rawValue
            if let f = b.siteFailFraction, f > 0, b.site == .ok || b.site == nil {
                siteMode = "ok, \(Int(f * 100))% \((b.siteFailAs ?? .reset).rawValue)"
            }
            return HostStatus(name: h.cfg.name, address: h.cfg.address, rack: h.cfg.rack, cluster: h.cfg.cluster,
                              state: h.stateName, phase: h.phaseName, kernel: h.kernel, bootCount: h.bootCount,
                              bootID: h.bootID, uptime: (uptime(h) * 100).rounded() / 100,
                              sunreclaimKiB: h.running ? Int(max(0, h.sunreclaim + h.noise) / 1024) : 0,
                              oomKill: h.running ? Int(h.oom) : 0,
                              site: h.running ? siteMode : "down",
                              sshd: !h.running ? "down" : (h.sshdStopped ? "stopped" : "up"),
                              dropped: h.dropped)
        }
        let st = FleetStatus(supervisorPid: getpid(), updated: isoTime(now()), hosts: list)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        if let d = try? enc.encode(st) { replaceFile(L.statusJSON, String(decoding: d, as: UTF8.self)) }
    }

    // MARK: requests (from shims and `fleetsim set`)

    func processRequests() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: L.requests), !names.isEmpty else { return }
        for n in names.sorted() where !n.hasPrefix(".") && !n.hasSuffix(".tmp") {
            let path = L.requests + "/" + n
            let text = readFile(path) ?? ""
            var lines = text.split(separator: "\n").map(String.init)
            let target = lines.isEmpty ? "" : lines.removeFirst()
            let targets = hosts.filter { target == "all" || $0.cfg.name == target || $0.cfg.address == target }
            if targets.isEmpty { log("request \(n): no host \(target)") }
            for h in targets {
                if n.hasSuffix(".reboot") {
                    requestReboot(h)
                } else {
                    for l in lines {
                        guard let eq = l.firstIndex(of: "=") else { continue }
                        apply(h, key: String(l[..<eq]), value: String(l[l.index(after: eq)...]))
                    }
                }
            }
            unlink(path)
        }
        writeStatus()
    }

    func requestReboot(_ h: HostRuntime) {
        switch h.phase {
        case .up, .starting:
            log("\(h.cfg.name): reboot requested")
            h.phase = .rebootPending(at: monotonic() + 0.5)
        default:
            log("\(h.cfg.name): reboot requested while \(h.phaseName); ignored")
        }
    }

    func apply(_ h: HostRuntime, key: String, value: String) {
        let t = monotonic()
        switch key {
        case "sshd":
            let (verb, dur) = splitAction(value)
            if verb == "stop" {
                stopSSHD(h)
                h.sshdStartAt = dur.map { t + $0 }
            } else {
                h.sshdStartAt = nil
                startSSHD(h)
            }
            log("\(h.cfg.name): sshd=\(value)")
        case "drop":
            if value == "off" || value == "false" {
                h.dropUntil = nil
                setDrop(h, on: false)
            } else {
                if !h.dropped { setDrop(h, on: true) }
                let d = (value == "on" || value == "true") ? nil : parseDuration(value)
                h.dropUntil = d.map { t + $0 }
            }
            log("\(h.cfg.name): drop=\(value)")
        case "grub_default", "grub_recordfail_timeout":
            // A line of the host's /etc/default/grub (empty: none), as an admin would edit it.
            let file = h.paths.root + "/etc-default/grub", name = key.uppercased()
            var lines = (readFile(file) ?? "").split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix(name + "=") }.map(String.init)
            while lines.last == "" { lines.removeLast() }
            if !value.isEmpty { lines.append("\(name)=\(value)") }
            replaceFile(file, lines.joined(separator: "\n") + "\n")
            log("\(h.cfg.name): \(name)=\(value) in /etc/default/grub")
        case "recordfail":
            // Ubuntu's grubenv flag of a boot that did not finish.
            do {
                if value == "true" || value == "1" { try Grub.setEnv(h.paths.grubEnv, "recordfail", "1") } else { try Grub.unsetEnv(h.paths.grubEnv, "recordfail") }
                log("\(h.cfg.name): recordfail=\(value)")
            } catch {
                log("\(h.cfg.name): recordfail: \(error)")
            }
        case "power":
            log("\(h.cfg.name): power=\(value)")
            switch value {
            case "off":
                killNamespace(h)
                closeListeners(h)
                h.phase = .off
            case "on":
                if case .off = h.phase { chooseAndLoad(h, at: t) }
                if case .hung = h.phase { chooseAndLoad(h, at: t) }
            default:  // cycle: a hard reset
                killNamespace(h)
                closeListeners(h)
                chooseAndLoad(h, at: t)
            }
        default:
            // Persistent overrides: behaviour keys and boot_full. Empty value removes the override.
            var lines = h.live.lines.filter { $0.0 != key }
            if !value.isEmpty { lines.append((key, value)) }
            LiveOverrides.save(h.paths.live, lines)
            h.live = LiveOverrides.load(h.paths.live)
            log("\(h.cfg.name): \(key)=\(value)")
            if key == "site" { syncSite(h) }
            if key == "never_return" || key == "never_returns", value == "false", case .hung = h.phase {
                chooseAndLoad(h, at: t)
            }
        }
    }

    func splitAction(_ v: String) -> (String, Double?) {
        let parts = v.split(separator: ":", maxSplits: 1).map(String.init)
        return (parts.first ?? v, parts.count > 1 ? parseDuration(parts[1]) : nil)
    }
}

/// `addr:port` of every listening TCP socket (from /proc/net/tcp; all hosts share the network namespace).
func listeningSockets() -> Set<String> {
    var out = Set<String>()
    guard let s = readFile("/proc/net/tcp") else { return out }
    for line in s.split(separator: "\n").dropFirst() {
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        guard f.count > 3, f[3] == "0A" else { continue }
        let la = f[1].split(separator: ":")
        guard la.count == 2, let a = UInt32(la[0], radix: 16), let p = UInt32(la[1], radix: 16) else { continue }
        out.insert("\(a & 255).\((a >> 8) & 255).\((a >> 16) & 255).\(a >> 24):\(p)")
    }
    return out
}
