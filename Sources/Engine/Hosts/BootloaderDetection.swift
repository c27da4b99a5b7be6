import Basics
import RolloutConfig

/// `bootloader: auto`: which driver a host needs, told from its files. The survey's one round
/// trip carries `command`'s section (read-only: os-release's ID and ID_LIKE, which boot files
/// and tools exist); `parse` reads it, bounded, and `bootloader` decides:
///
/// - `grub-bls`: BLS entries (`/boot/loader/entries/*.conf`), `grubby`, and a GRUB 2 config
///   (`/boot/grub2/grub.cfg` or `/boot/efi/EFI/*/grub.cfg`), on a host not of Debian's family;
/// - `grub`: `/boot/grub/grub.cfg` on Debian or Ubuntu (ID or ID_LIKE);
/// - `systemd-boot`: `bootctl`, boot entries on an ESP (`/efi`, `/boot/efi` or `/boot`) and no
///   GRUB config at all;
/// - anything else: nil, and the host is refused before anything is touched.
public struct BootloaderDetection: Sendable, Equatable {
    /// os-release's `ID` (lower case, letters, digits, `._-`), nil when none was read.
    public var id: String?
    /// os-release's `ID_LIKE` words.
    public var idLike: [String] = []
    /// What `command` found, of `known`, in its order.
    public var found: [String] = []

    public init(id: String? = nil, idLike: [String] = [], found: [String] = []) {
        self.id = id
        self.idLike = idLike
        self.found = found
    }

    static let marker = "@@rollctl-file bootloader"
    /// What `command` may report found; any other line of its section is ignored.
    static let known = ["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/boot/efi/EFI/*/grub.cfg", "/boot/loader/entries/*.conf",
                        "/efi/loader/entries", "/boot/efi/loader/entries", "grubby", "bootctl"]

    /// Read-only; prints at most a few hundred bytes whatever the host holds.
    public static let command = "echo '\(marker)'; "
        + "for f in /etc/os-release /usr/lib/os-release; do if [ -r \"$f\" ]; then grep -E '^(ID|ID_LIKE)=' \"$f\" | head -n 2 | cut -c 1-200; break; fi; done; "
        + "for p in /boot/grub/grub.cfg /boot/grub2/grub.cfg; do [ -f \"$p\" ] && echo \"found $p\"; done; "
        + "ls /boot/efi/EFI/*/grub.cfg >/dev/null 2>&1 && echo 'found /boot/efi/EFI/*/grub.cfg'; "
        + "ls /boot/loader/entries/*.conf >/dev/null 2>&1 && echo 'found /boot/loader/entries/*.conf'; "
        + "for d in /efi/loader/entries /boot/efi/loader/entries; do [ -d \"$d\" ] && echo \"found $d\"; done; "
        + "for c in grubby bootctl; do command -v \"$c\" >/dev/null 2>&1 && echo \"found $c\"; done; true"

    /// Reads `command`'s section of `output` (its last one: what the host printed before it cannot
    /// forge the one printed last). Bounded: 4 KiB and 32 lines of it; unknown lines are ignored.
    public static func parse(_ output: String) -> BootloaderDetection {
        var d = BootloaderDetection()
        guard let lines = lastSection(of: output, after: marker, lines: 32) else { return d }
        for line in lines {
            if line.hasPrefix("ID=") {
                d.id = word(line.dropFirst(3))
            } else if line.hasPrefix("ID_LIKE=") {
                d.idLike = line.dropFirst(8).split(whereSeparator: { $0 == " " || $0 == "\"" || $0 == "'" }).prefix(8).compactMap { word($0) }
            } else if line.hasPrefix("found "), let k = known.first(where: { $0 == line.dropFirst(6) }), !d.found.contains(k) {
                d.found.append(k)
            }
        }
        return d
    }

    /// An os-release word: quotes dropped, lower case, only letters, digits and `._-`, at most 64.
    static func word(_ s: Substring) -> String? {
        let w = String(s.filter { $0 != "\"" && $0 != "'" }.lowercased().prefix(64))
        guard !w.isEmpty, w.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else { return nil }
        return w
    }

    /// Debian, Ubuntu, or a distribution like them (ID or ID_LIKE).
    public var debianLike: Bool { ([id].compactMap { $0 } + idLike).contains { $0 == "debian" || $0 == "ubuntu" } }

    func has(_ k: String) -> Bool { found.contains(k) }

    /// The driver this host needs; nil when its files do not tell.
    public var bootloader: Bootloader? {
        let grubCfg = has("/boot/grub/grub.cfg"), grub2Cfg = has("/boot/grub2/grub.cfg") || has("/boot/efi/EFI/*/grub.cfg")
        let bls = has("/boot/loader/entries/*.conf")
        if bls && has("grubby") && grub2Cfg && !debianLike { return .grubBLS }
        if grubCfg && debianLike { return .grub }
        if has("bootctl") && (bls || has("/efi/loader/entries") || has("/boot/efi/loader/entries")) && !grubCfg && !grub2Cfg { return .systemdBoot }
        return nil
    }

    /// The driver's name (`grub`, `grub-bls`, `systemd-boot`), nil when the files do not tell.
    public var driverName: String? { bootloader.map { BootloaderDrivers.driver(for: $0).name } }

    /// What was read, for messages: `ID=rhel, ID_LIKE=fedora; found grubby, /boot/loader/entries/*.conf`.
    public var summary: String {
        let os = id.map { "ID=\($0)" + (idLike.isEmpty ? "" : ", ID_LIKE=\(idLike.joined(separator: " "))") } ?? "no os-release ID"
        return os + "; " + (found.isEmpty ? "none of \(Self.known.joined(separator: ", ")) found" : "found " + found.joined(separator: ", "))
    }
}

/// Each host's driver for a rollout: the plan's, or with `bootloader: auto` the one its files
/// tell (`BootloaderDetection`). What is chosen is journaled per host at creation.
public enum BootloaderChoice {
    /// Host name -> driver name for `hosts` (the hosts to roll); an error per host whose
    /// bootloader `auto` cannot tell, or whose driver does not fit the plan's `kernel.packages`
    /// (or, for systemd-boot off Debian, the default install). Nothing is touched either way.
    public static func resolve(plan: Plan, hosts: [InventoryHost], detected: [String: BootloaderDetection])
        -> (drivers: [String: String], errors: [InputError]) {
        guard plan.bootloader == .auto else {
            let name = BootloaderDrivers.driver(for: plan.bootloader).name
            return (Dictionary(hosts.map { ($0.name, name) }, uniquingKeysWith: { a, _ in a }), [])
        }
        let (line, column) = PlanLines(text: plan.text).position(of: "bootloader")
        var drivers: [String: String] = [:], errors: [InputError] = []
        func refuse(_ host: String, _ why: String, hint: String) {
            errors.append(InputError(file: plan.path, line: line, column: column, "bootloader auto: host \(host): \(why)", hint: hint))
        }
        let explicit = "set bootloader: grub, grub-bls or systemd-boot in the plan for these hosts, or leave the host out (select.exclude)"
        for h in hosts {
            guard let d = detected[h.name] else {
                refuse(h.name, "its boot files were not read", hint: explicit)
                continue
            }
            guard let b = d.bootloader, let name = d.driverName else {
                refuse(h.name, "cannot tell its bootloader (\(d.summary))", hint: explicit)
                continue
            }
            if let kind = plan.kernel.packages.first?.kind, (kind == .deb) != d.debianLike {
                refuse(h.name, "kernel.packages are .\(kind.rawValue) files, but it is a \(name) host (\(d.summary))",
                       hint: "ship .deb files to Debian/Ubuntu hosts and .rpm files to RHEL/Fedora hosts, in separate plans (select by label)")
                continue
            }
            if b == .systemdBoot && plan.kernel.packages.isEmpty && !plan.kernel.installGiven && !d.debianLike {
                refuse(h.name, "systemd-boot on a host not of Debian's family: the default install (apt-get) would not work there (\(d.summary))",
                       hint: "give kernel.install (e.g. dnf install -y kernel-{release})")
                continue
            }
            drivers[h.name] = name
        }
        return (drivers, errors)
    }

    /// `grub on 3 hosts (web-001, web-002, web-003), grub-bls on 2 (db-001, db-002)`: the hosts
    /// of each driver, most first; more than 3 hosts show the first two and `…`.
    public static func summary(_ drivers: [String: String]) -> String {
        var by: [String: [String]] = [:]
        for (host, name) in drivers { by[name, default: []].append(host) }
        let groups = by.map { ($0.key, $0.value.sorted()) }.sorted { ($0.1.count, $1.0) > ($1.1.count, $0.0) }
        return groups.enumerated().map { i, g in
            let (name, hosts) = g
            let list = hosts.count <= 3 ? hosts.joined(separator: ", ") : hosts.prefix(2).joined(separator: ", ") + ", …"
            return "\(name) on \(hosts.count)\(i == 0 ? " host\(hosts.count == 1 ? "" : "s")" : "") (\(list))"
        }.joined(separator: ", ")
    }
}

/// The lines after the last `marker` line of a host's output (a section one of the survey's or
/// check step's commands printed): at most 4 KiB, `lines` lines of 256 characters each, so a
/// hostile host cannot make the parsers work on megabytes. Nil when there is no such line.
func lastSection(of output: String, after marker: String, lines: Int) -> [Substring]? {
    guard let r = output.range(of: marker + "\n", options: .backwards) else { return nil }
    let section = String(decoding: output[r.upperBound...].utf8.prefix(4096), as: UTF8.self)
    return section.split(whereSeparator: \.isNewline).prefix(lines).map { $0.prefix(256) }
}
