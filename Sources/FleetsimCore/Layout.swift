import Foundation

/// The distribution a simulated host looks like: its boot files, its package tool and
/// bootloader commands, and how its firmware picks a kernel.
public enum Flavour: String, Codable, Sendable, CaseIterable {
    /// Debian 12: GRUB with a generated `grub.cfg`, `apt-get`, `grub-reboot`.
    case debian
    /// RHEL 9: GRUB with Boot Loader Specification entries, `dnf`, `rpm`, `grubby`, `grub2-reboot`.
    case rhel
    /// Debian 13 with systemd-boot: BLS type 1 entries on the ESP at /boot/efi (kernel-install),
    /// `apt-get`, `bootctl`; the boot loader's EFI variables in the host's `efivars` file.
    case systemdBoot = "systemd-boot"
    /// Ubuntu 24.04: Debian's tools and GRUB, with Ubuntu's menu titles, kernel packages and
    /// `recordfail` (set by GRUB at boot, cleared once the system is up).
    case ubuntu

    /// The flavour whose tools and boot files a host has (Ubuntu's are Debian's).
    public var family: Flavour { self == .ubuntu ? .debian : self }
}

/// One simulated host as `up` created it.
public struct HostConfig: Codable, Sendable {
    public var name: String
    public var address: String
    public var rack: String
    public var cluster: String
    public var rootUUID: String
    public var flavour: Flavour
    /// `/etc/machine-id` (32 hex digits): the prefix of a rhel host's BLS entry ids.
    public var machineID: String

    public init(name: String, address: String, rack: String, cluster: String, rootUUID: String,
                flavour: Flavour = .debian, machineID: String) {
        self.name = name; self.address = address; self.rack = rack; self.cluster = cluster
        self.rootUUID = rootUUID; self.flavour = flavour; self.machineID = machineID
    }

    enum CodingKeys: String, CodingKey { case name, address, rack, cluster, rootUUID, flavour, machineID }

    // A fleet.json written before flavours existed has Debian hosts.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        address = try c.decode(String.self, forKey: .address)
        rack = try c.decode(String.self, forKey: .rack)
        cluster = try c.decode(String.self, forKey: .cluster)
        rootUUID = try c.decode(String.self, forKey: .rootUUID)
        flavour = try c.decodeIfPresent(Flavour.self, forKey: .flavour) ?? .debian
        machineID = try c.decodeIfPresent(String.self, forKey: .machineID) ?? rootUUID.filter { $0 != "-" }
    }
}

/// Everything `up` decided, written to DIR/fleet.json; the supervisor, shims and `set` read it.
public struct FleetConfig: Codable, Sendable {
    public var dir: String
    public var sshPort: Int
    public var binary: String
    public var tag: String            // marks this fleet's iptables rules
    public var createdAt: Double
    public var scenario: Scenario
    public var hosts: [HostConfig]

    public func host(named n: String) -> HostConfig? {
        hosts.first { $0.name == n || $0.address == n }
    }

    public static func load(dir: String) throws -> FleetConfig {
        let path = Layout(dir: dir).fleetJSON
        guard let d = FileManager.default.contents(atPath: path) else {
            throw FleetsimError("no fleet in \(dir) (missing \(path)); run `fleetsim up` first")
        }
        do { return try JSONDecoder().decode(FleetConfig.self, from: d) } catch {
            throw FleetsimError("cannot read \(path): \(error)")
        }
    }
}

/// Paths inside DIR.
public struct Layout: Sendable {
    public let dir: String
    public init(dir: String) { self.dir = dir }

    public var fleetJSON: String { dir + "/fleet.json" }
    public var statusJSON: String { dir + "/status.json" }
    public var supervisorPid: String { dir + "/supervisor.pid" }
    public var supervisorLog: String { dir + "/supervisor.log" }
    public var hostInit: String { dir + "/host-init.sh" }
    public var inventory: String { dir + "/inventory.yaml" }
    public var knownHosts: String { dir + "/known_hosts" }
    public var clientKey: String { dir + "/client_key" }
    public var authorizedKeys: String { dir + "/authorized_keys" }
    public var customers: String { dir + "/customers.csv" }
    public var requests: String { dir + "/run/requests" }
    /// The processes fleetsim started for this fleet, with their start times (`ProcessLedger`).
    public var processes: String { dir + "/run/processes" }
    public var marker: String { dir + "/.fleetsim" }

    public func hostDir(_ name: String) -> String { dir + "/hosts/" + name }
}

/// Paths inside DIR/hosts/<name>.
public struct HostPaths: Sendable {
    public let root: String
    public init(_ root: String) { self.root = root }
    public var proc: String { root + "/proc" }
    public var meminfo: String { root + "/proc/meminfo" }
    public var vmstat: String { root + "/proc/vmstat" }
    public var uptime: String { root + "/proc/uptime" }
    public var osrelease: String { root + "/proc/osrelease" }
    public var bootID: String { root + "/proc/boot_id" }
    public var boot: String { root + "/boot" }
    public var grubCfg: String { root + "/boot/grub/grub.cfg" }
    public var grubEnv: String { root + "/boot/grub/grubenv" }
    /// A rhel host's GRUB: grubenv and grub.cfg under /boot/grub2, entries under /boot/loader/entries.
    public var grub2Env: String { root + "/boot/grub2/grubenv" }
    public var grub2Cfg: String { root + "/boot/grub2/grub.cfg" }
    public var blsEntries: String { root + "/boot/loader/entries" }
    /// Files bind-mounted over the machine's /etc inside the host (a rhel or systemd-boot host's
    /// os-release and machine-id, a rhel host's /etc/sysconfig).
    public var etc: String { root + "/etc" }
    public var osRelease: String { root + "/etc/os-release" }
    public var machineID: String { root + "/etc/machine-id" }
    public var sysconfigKernel: String { root + "/etc/sysconfig/kernel" }
    /// A systemd-boot host's ESP, /boot/efi inside the host (under its /boot).
    public var esp: String { root + "/boot/efi" }
    /// A systemd-boot host's EFI variables (`LoaderEntryOneShot=...` lines): what its firmware keeps across reboots.
    public var efiVars: String { root + "/efivars" }
    public var sbin: String { root + "/sbin" }
    public var home: String { root + "/root" }
    public var sshdConfig: String { root + "/sshd_config" }
    public var sshdLog: String { root + "/sshd.log" }
    public var sshdPid: String { root + "/sshd.pid" }
    public var hostKey: String { root + "/ssh_host_ed25519_key" }
    public var bootsLog: String { root + "/boots.log" }
    /// The kernel packages a rhel host's dnf installed from files (`install <NVRA> <release> <file>`): rpm -q reads it.
    public var dnfLog: String { root + "/dnf.log" }
    public var live: String { root + "/live.conf" }
    public var nsPid: String { root + "/ns.pid" }
    public var consoleLog: String { root + "/console.log" }
}

/// Live overrides of one host (DIR/hosts/<name>/live.conf, `key=value` lines), set by `fleetsim set`.
public struct LiveOverrides: Sendable {
    public var behaviour = Behaviour()
    public var bootFull: Bool? = nil
    public var lines: [(String, String)] = []

    public static func load(_ path: String) -> LiveOverrides {
        var o = LiveOverrides()
        guard let s = readFile(path) else { return o }
        for line in s.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let k = String(line[..<eq]), v = String(line[line.index(after: eq)...])
            o.lines.append((k, v))
            if k == "boot_full" { o.bootFull = (v == "true") } else { _ = try? o.behaviour.set(key: k, value: v) }
        }
        return o
    }

    public static func save(_ path: String, _ lines: [(String, String)]) {
        replaceFile(path, lines.map { "\($0.0)=\($0.1)\n" }.joined())
    }
}

/// Behaviour of a host now: scenario layers plus live overrides.
public func effectiveBehaviour(_ fleet: FleetConfig, host: String, release: String, live: LiveOverrides) -> Behaviour {
    fleet.scenario.behaviour(host: host, release: release).merged(with: live.behaviour)
}
