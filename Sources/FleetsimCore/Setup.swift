import Basics
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Options of `fleetsim up`.
public struct UpOptions: Sendable {
    public var hosts: Int
    public var racks: Int
    public var clusters: Int
    public var dir: String
    public var scenarioPath: String?
    public var sshPort: Int
    public var baseAddress: String
    public var namePrefix: String
    public var seed: UInt64
    /// Each host's flavour by position (`parseFlavours`); hosts past its end are Debian.
    public var flavours: [Flavour]
    public init(hosts: Int, racks: Int, clusters: Int, dir: String, scenarioPath: String?, sshPort: Int,
                baseAddress: String, namePrefix: String, seed: UInt64, flavours: [Flavour] = []) {
        self.hosts = hosts; self.racks = racks; self.clusters = clusters; self.dir = dir
        self.scenarioPath = scenarioPath; self.sshPort = sshPort; self.baseAddress = baseAddress
        self.namePrefix = namePrefix; self.seed = seed; self.flavours = flavours
    }
}

/// Names of the commands fleetsim shims inside each host. Every host has them all; a command
/// of another flavour answers as a shell does for a command that is not installed (`Shims`).
public let shimNames = ["apt-get", "dpkg", "update-grub", "grub-reboot", "grub-set-default", "grub-editenv", "grub-probe",
                        "dnf", "rpm", "grubby", "grub2-reboot", "grub2-set-default", "grub2-editenv", "grub2-probe",
                        "bootctl", "kernel-install", "reboot", "systemctl", "shutdown", "uname", "hostname"]
/// Shims also bind-mounted over the real binary of that name (so absolute paths hit the shim too:
/// a rhel host's `apt-get` is the shim saying it is not installed, never the machine's apt).
let shimsOverReal: Set<String> = ["apt-get", "dpkg", "update-grub", "grub-reboot", "grub-set-default", "grub-editenv", "grub-probe",
                                  "dnf", "rpm", "grubby", "grub2-reboot", "grub2-set-default", "grub2-editenv", "grub2-probe",
                                  "bootctl", "kernel-install", "reboot", "systemctl", "shutdown"]

public enum Setup {
    /// Writes DIR for a new fleet: keys, per-host trees, inventory, known_hosts, customers. Returns the config.
    public static func create(_ o: UpOptions, binary: String) throws -> FleetConfig {
        let L = Layout(dir: o.dir)
        let scenario: Scenario
        if let sp = o.scenarioPath {
            guard let text = readFile(sp) else { throw FleetsimError("cannot read scenario \(sp)", exitCode: 2) }
            scenario = try Scenario.parse(yaml: text, source: sp)
        } else {
            scenario = Scenario.builtin()
        }
        let addresses = try hostAddresses(base: o.baseAddress, count: o.hosts)
        let width = max(3, String(o.hosts).count)
        var hosts: [HostConfig] = []
        for i in 0..<o.hosts {
            let name = o.namePrefix + String(repeating: "0", count: max(0, width - String(i + 1).count)) + String(i + 1)
            let flavour = scenario.hosts[name]?.flavour ?? (i < o.flavours.count ? o.flavours[i] : .debian)
            hosts.append(HostConfig(name: name, address: addresses[i], rack: "r\(i % max(1, o.racks) + 1)",
                                    cluster: "c\(i % max(1, o.clusters) + 1)", rootUUID: randomUUIDLower(),
                                    flavour: flavour, machineID: randomUUIDLower().filter { $0 != "-" }))
        }
        for (name, _) in scenario.hosts where !hosts.contains(where: { $0.name == name }) {
            FileHandle.standardError.write(Data("fleetsim: warning: scenario names host \(name), which this fleet does not have\n".utf8))
        }
        try mkdirs(o.dir)
        try mkdirs(L.requests)
        try writeFile(L.marker, "fleetsim fleet directory; `fleetsim down` removes it\n")
        let tag = "fleetsim:" + String(format: "%08x", djb2(o.dir))
        let fleet = FleetConfig(dir: o.dir, sshPort: o.sshPort, binary: binary, tag: tag, createdAt: now(),
                                scenario: scenario, hosts: hosts)

        // Keys: one client key, one ed25519 host key per host (ssh-keygen, in parallel).
        var jobs: [[String]] = [["/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleetsim-client", "-f", L.clientKey]]
        for h in hosts {
            let hp = HostPaths(L.hostDir(h.name))
            try mkdirs(hp.root)
            jobs.append(["/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@\(h.name)", "-f", hp.hostKey])
        }
        try runParallel(jobs, width: 8)
        guard let clientPub = readFile(L.clientKey + ".pub") else { throw FleetsimError("ssh-keygen made no client key") }
        try writeFile(L.authorizedKeys, clientPub, mode: 0o600)

        var known = ""
        for h in hosts {
            guard let pub = readFile(HostPaths(L.hostDir(h.name)).hostKey + ".pub") else {
                throw FleetsimError("ssh-keygen made no host key for \(h.name)")
            }
            let parts = pub.split(separator: " ")
            let hostField = o.sshPort == 22 ? h.address : "[\(h.address)]:\(o.sshPort)"
            known += "\(hostField) \(parts[0]) \(parts[1])\n"
            try writeHostTree(fleet, h)
        }
        try writeFile(L.knownHosts, known)
        try writeFile(L.inventory, inventoryYAML(fleet))
        try writeFile(L.customers, customersCSV(hosts.map(\.name), seed: o.seed))
        try writeFile(L.hostInit, hostInitScript(), mode: 0o755)
        let data = try JSONEncoder().encode(fleet)
        try data.write(to: URL(fileURLWithPath: L.fleetJSON))
        return fleet
    }

    /// /dev/shm/fleetsim-<hash of DIR> when /dev/shm is a tmpfs.
    public static func shmDir(dir: String) -> String? {
        let mounts = readFile("/proc/mounts") ?? ""
        guard mounts.split(separator: "\n").contains(where: {
            let f = $0.split(separator: " ")
            return f.count > 2 && f[1] == "/dev/shm" && f[2] == "tmpfs"
        }) else { return nil }
        return "/dev/shm/fleetsim-" + String(format: "%08x", djb2(dir))
    }

    static func djb2(_ s: String) -> UInt32 {
        var h: UInt32 = 5381
        for b in s.utf8 { h = (h &<< 5) &+ h &+ UInt32(b) }
        return h
    }

    /// Per-host tree: /boot with the initial kernel, grub.cfg, grubenv, shims, home, sshd_config, proc files.
    static func writeHostTree(_ fleet: FleetConfig, _ h: HostConfig) throws {
        let L = Layout(dir: fleet.dir)
        let hp = HostPaths(L.hostDir(h.name))
        // The fake /proc files are rewritten every second: keep them on tmpfs when there is one
        // (DIR/hosts/<name>/proc is then a symlink into /dev/shm), so the disk sees no writes.
        if let shm = shmDir(dir: fleet.dir) {
            let target = shm + "/" + h.name
            try mkdirs(target)
            try FileManager.default.createSymbolicLink(atPath: hp.proc, withDestinationPath: target)
        }
        for d in [hp.proc, hp.sbin, hp.home] { try mkdirs(d) }
        let rel = fleet.scenario.initialKernel(host: h.name)
        switch h.flavour {
        case .debian, .ubuntu:
            try mkdirs(hp.boot + "/grub")
            try installKernelFiles(bootDir: hp.boot, release: rel)
            try writeFile(hp.grubCfg, Grub.config(kernels: Grub.installedKernels(bootDir: hp.boot), rootUUID: h.rootUUID,
                                                  flavour: h.flavour, defaults: Grub.readDefaults(fromText: Ubuntu.etcDefaultGrub)))
            try Grub.writeEnv(hp.grubEnv, [("saved_entry", Grub.titlePath(release: rel, flavour: h.flavour))])
            if h.flavour == .ubuntu {
                try mkdirs(hp.etc)
                try writeFile(hp.osRelease, Ubuntu.osRelease)
            }
        case .rhel:
            // As the installer leaves it: the kernel and its BLS entry, the rescue entry, the
            // default named by entry id, and UPDATEDEFAULT=yes (a new kernel becomes the default).
            try mkdirs(hp.boot + "/grub2")
            try BLS.installKernel(bootDir: hp.boot, release: rel, machineID: h.machineID)
            try BLS.installRescue(bootDir: hp.boot, machineID: h.machineID)
            try writeFile(hp.grub2Cfg, BLS.grubCfg(rootUUID: h.rootUUID))
            try Grub.writeEnv(hp.grub2Env, [("saved_entry", BLS.entryID(machineID: h.machineID, release: rel)),
                                            ("menu_auto_hide", "1"), ("boot_success", "0")])
            try mkdirs(hp.etc + "/sysconfig")
            try writeFile(hp.osRelease, BLS.osRelease)
            try writeFile(hp.machineID, h.machineID + "\n", mode: 0o444)
            try writeFile(hp.sysconfigKernel, BLS.sysconfigKernel)
        case .systemdBoot:
            // As `bootctl install` and the first kernel's package leave it: the kernel's files in
            // /boot, systemd-boot and its entry on the ESP, no EFI variable set (the entry that
            // sorts first, the newest kernel, is the default), no GRUB at all.
            try mkdirs(hp.boot)
            try installKernelFiles(bootDir: hp.boot, release: rel)
            try SystemdBoot.installLoader(esp: hp.esp)
            try SystemdBoot.kernelInstallAdd(esp: hp.esp, machineID: h.machineID, rootUUID: h.rootUUID, release: rel,
                                             image: hp.boot + "/vmlinuz-\(rel)", initrds: [hp.boot + "/initrd.img-\(rel)"])
            try writeFile(hp.efiVars, "")
            try mkdirs(hp.etc)
            try writeFile(hp.osRelease, SystemdBoot.osRelease)
            try writeFile(hp.machineID, h.machineID + "\n", mode: 0o444)
        }
        let shim = "#!/bin/sh\n# fleetsim shim: runs the simulated command for host \(h.name)\nexec \(shellQuote(fleet.binary)) shim \(shellQuote(hp.root)) \"$(basename \"$0\")\" \"$@\"\n"
        for n in shimNames { try writeFile(hp.sbin + "/" + n, shim, mode: 0o755) }
        try writeFile(hp.home + "/.bashrc", "# fleetsim host \(h.name): root's .bashrc\n")
        try writeFile(hp.home + "/.profile", "# fleetsim host \(h.name)\n[ -f ~/.bashrc ] && . ~/.bashrc\n")
        try writeFile(hp.sshdConfig, sshdConfig(fleet, h))
        // /etc/default as the machine has it, plus Debian's grub defaults with GRUB_DEFAULT=saved.
        let etcDefault = hp.root + "/etc-default"
        try mkdirs(etcDefault)
        for f in (try? FileManager.default.contentsOfDirectory(atPath: "/etc/default")) ?? [] {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: "/etc/default/" + f, isDirectory: &isDir), !isDir.boolValue,
               let text = readFile("/etc/default/" + f) {
                try writeFile(etcDefault + "/" + f, text)
            }
        }
        if h.flavour != .systemdBoot { try writeFile(etcDefault + "/grub", h.flavour == .rhel ? BLS.etcDefaultGrub : h.flavour == .ubuntu ? Ubuntu.etcDefaultGrub : """
            # If you change this file, run 'update-grub' afterwards to update
            # /boot/grub/grub.cfg.
            # For full documentation of the options in this file, see:
            #   info -f grub -n 'Simple configuration'

            GRUB_DEFAULT=saved
            GRUB_TIMEOUT=5
            GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
            GRUB_CMDLINE_LINUX_DEFAULT="quiet panic=10"
            GRUB_CMDLINE_LINUX=""

            """) }
        for f in [hp.meminfo, hp.vmstat, hp.uptime, hp.osrelease, hp.bootID] { try writeFile(f, "") }
        try writeFile(hp.bootsLog, "")
        try writeFile(hp.live, "")
    }

    public static func installKernelFiles(bootDir: String, release: String) throws {
        try writeFile(bootDir + "/vmlinuz-\(release)", "fleetsim: simulated Linux kernel image \(release)\n")
        try writeFile(bootDir + "/initrd.img-\(release)", "fleetsim: simulated initramfs for \(release)\n")
        try writeFile(bootDir + "/config-\(release)", "# Linux/x86 \(release) Kernel Configuration (fleetsim)\nCONFIG_SLUB=y\n")
        try writeFile(bootDir + "/System.map-\(release)", "ffffffff81000000 T _text\n")
    }

    static func sshdConfig(_ fleet: FleetConfig, _ h: HostConfig) -> String {
        let L = Layout(dir: fleet.dir)
        let hp = HostPaths(L.hostDir(h.name))
        return """
        # fleetsim: sshd of simulated host \(h.name)
        ListenAddress \(h.address):\(fleet.sshPort)
        HostKey \(hp.hostKey)
        PidFile \(hp.sshdPid)
        AuthorizedKeysFile \(L.authorizedKeys)
        StrictModes no
        UsePAM no
        PermitRootLogin prohibit-password
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        MaxStartups 200:30:400
        MaxSessions 64
        LogLevel VERBOSE
        UseDNS no
        PrintMotd no
        PrintLastLog no
        X11Forwarding no
        AcceptEnv LANG LC_*
        Subsystem sftp /usr/lib/openssh/sftp-server

        """
    }

    public static func inventoryYAML(_ fleet: FleetConfig) -> String {
        var s = """
        # written by fleetsim up
        defaults:
          user: root
          port: \(fleet.sshPort)
          identity: client_key          # relative paths are relative to the inventory file
          known_hosts: known_hosts
          host_key_policy: strict
        hosts:

        """
        for h in fleet.hosts {
            let flavour = h.flavour == .debian ? "" : ", flavour: \(h.flavour.rawValue)"
            s += "  - name: \(h.name)\n    address: \(h.address)\n    labels: {rack: \(h.rack), cluster: \(h.cluster)\(flavour)}\n"
        }
        return s
    }

    static let firstNames = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Karin",
                             "Lukas", "Mara", "Nils", "Olga", "Paul", "Rosa", "Sven", "Tina", "Uwe", "Vera", "Walter"]
    static let lastNames = ["Bauer", "Novak", "Schmidt", "Dubois", "Rossi", "Kowalski", "Jensen", "Silva", "Meyer",
                            "Horvat", "Lindqvist", "Moreau", "Costa", "Weber", "Fischer", "Nagy"]

    /// `host,customer_id,name,email`: 2-5 customers per host, about one in seven also on another host.
    public static func customersCSV(_ hostNames: [String], seed: UInt64) -> String {
        var rng = SeededRandom(seed: seed)
        var customers: [(id: String, name: String)] = []
        var s = "host,customer_id,name,email\n"
        for host in hostNames {
            let k = Int.random(in: 2...5, using: &rng)
            var here = Set<String>()
            for _ in 0..<k {
                var c: (id: String, name: String)
                if customers.count > 4, Double.random(in: 0..<1, using: &rng) < 0.15,
                   let pick = customers.randomElement(using: &rng), !here.contains(pick.id) {
                    c = pick
                } else {
                    let n = customers.count + 1
                    let id = "c" + String(repeating: "0", count: max(0, 4 - String(n).count)) + String(n)
                    c = (id, "\(firstNames.randomElement(using: &rng)!) \(lastNames.randomElement(using: &rng)!)")
                    customers.append(c)
                }
                here.insert(c.id)
                s += "\(host),\(c.id),\(c.name),\(c.id)@example.test\n"
            }
        }
        return s
    }

    /// PID 1 of a simulated host: bind-mounts the fake files, starts sshd, then reaps children forever.
    static func hostInitScript() -> String {
        var binds = ""
        for n in shimNames where shimsOverReal.contains(n) {
            // Also cover absolute paths of real binaries (e.g. /sbin/reboot -> /bin/systemctl) where they exist.
            binds += "for p in /usr/sbin/\(n) /usr/bin/\(n); do [ -f \"$p\" ] && [ ! -L \"$p\" ] && mount --bind \"$H/sbin/\(n)\" \"$p\"; done\n"
        }
        return """
        #!/bin/sh
        # fleetsim host init: PID 1 of one simulated host (own PID and mount namespace).
        # usage: host-init.sh HOSTDIR
        H="$1"
        set -e
        mount --bind "$H/proc/meminfo" /proc/meminfo
        mount --bind "$H/proc/vmstat" /proc/vmstat
        mount --bind "$H/proc/uptime" /proc/uptime
        mount --bind "$H/proc/osrelease" /proc/sys/kernel/osrelease
        mount --bind "$H/proc/boot_id" /proc/sys/kernel/random/boot_id
        mount --bind "$H/boot" /boot
        mount --bind "$H/sbin" /usr/local/sbin
        mount --bind "$H/root" /root
        mount --bind "$H/etc-default" /etc/default
        # A rhel, ubuntu or systemd-boot host's /etc/os-release, a rhel or systemd-boot host's /etc/machine-id, a rhel host's /etc/sysconfig (an empty
        # /etc/sysconfig is made on the machine to mount over, as /var/lib/rollctl is below).
        if [ -f "$H/etc/os-release" ]; then mount --bind "$H/etc/os-release" /etc/os-release; fi
        if [ -f "$H/etc/machine-id" ] && [ -f /etc/machine-id ]; then mount --bind "$H/etc/machine-id" /etc/machine-id; fi
        if [ -d "$H/etc/sysconfig" ]; then mkdir -p /etc/sysconfig; mount --bind "$H/etc/sysconfig" /etc/sysconfig; fi
        # Each host's own /var/lib/rollctl (rollctl's host lease), kept across its reboots.
        mkdir -p "$H/var-lib-rollctl" /var/lib/rollctl
        mount --bind "$H/var-lib-rollctl" /var/lib/rollctl
        # Each host's own /var/tmp (where rollctl ships kernel packages), kept across its reboots.
        mkdir -p "$H/var-tmp"
        chmod 1777 "$H/var-tmp"
        mount --bind "$H/var-tmp" /var/tmp
        mount -t tmpfs -o mode=0755,size=16m fleetsim-run /run
        mkdir -p /run/sshd
        set +e
        \(binds)/usr/sbin/sshd -f "$H/sshd_config" -E "$H/sshd.log"
        trap '' TERM INT HUP
        while :; do sleep 86400 & wait $!; done

        """
    }

    /// `up --flavours`: `rhel` (every host), or `flavour:count,...` taken in host order
    /// (`debian:2,rhel:3`: hosts 1-2 Debian, 3-5 RHEL, the rest Debian; `systemd-boot:2`).
    public static func parseFlavours(_ text: String, hosts: Int) throws -> [Flavour] {
        func flavour(_ s: Substring) throws -> Flavour {
            guard let f = Flavour(rawValue: String(s)) else {
                throw FleetsimError("--flavours: '\(s)' is not a flavour (known: \(Flavour.allCases.map(\.rawValue).joined(separator: ", ")))", exitCode: 2)
            }
            return f
        }
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        if parts.count == 1, !text.contains(":") { return Array(repeating: try flavour(parts[0]), count: hosts) }
        var out: [Flavour] = []
        for p in parts {
            let kv = p.split(separator: ":", omittingEmptySubsequences: false)
            guard kv.count == 2, let n = Int(kv[1]), n >= 0 else {
                throw FleetsimError("--flavours: '\(p)' is not flavour:count (e.g. --flavours debian:2,rhel:3)", exitCode: 2)
            }
            out += Array(repeating: try flavour(kv[0]), count: n)
        }
        guard out.count <= hosts else {
            throw FleetsimError("--flavours names \(out.count) hosts, the fleet has \(hosts)", exitCode: 2)
        }
        return out
    }

    /// Runs commands, `width` at a time; throws if one fails.
    static func runParallel(_ jobs: [[String]], width: Int) throws {
        try runAll(jobs, width: width)
    }
}
