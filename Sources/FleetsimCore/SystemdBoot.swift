import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// systemd-boot as Debian 13 sets it up: the ESP mounted at /boot/efi with `loader/loader.conf`
/// and one Boot Loader Specification type 1 entry per kernel,
/// `loader/entries/<machine-id>-<release>.conf`, its kernel and initrd copied to
/// `/<machine-id>/<release>/` on the ESP (kernel-install, run by the kernel package's
/// `/etc/kernel/postinst.d/zz-systemd-boot`). The boot loader's EFI variables
/// (`LoaderEntryOneShot`, `LoaderEntryDefault`, `LoaderEntrySelected`) live in the host's
/// `efivars` file, and the firmware picks as systemd-boot does: the one-shot entry (removed as it
/// is read), else the default entry, else loader.conf's `default`, else the first entry in sort order.
public enum SystemdBoot {
    public static let prettyName = "Debian GNU/Linux 13 (trixie)"
    public static let sortKey = "debian"
    public static let systemdVersion = "257.9-1~deb13u1"

    /// One type 1 entry file, with the keys bootctl and systemd-boot read.
    public struct Entry: Sendable, Equatable {
        /// The file name (`<machine-id>-<release>.conf`): what `bootctl set-default` takes.
        public var id: String
        public var title: String
        public var version: String
        public var machineID: String
        public var sortKey: String
        public var options: String
        /// `linux` as written, relative to the ESP (`/<machine-id>/<release>/linux`).
        public var linux: String
        public var initrd: [String]

        public init(id: String, title: String, version: String, machineID: String, sortKey: String, options: String, linux: String, initrd: [String]) {
            self.id = id; self.title = title; self.version = version; self.machineID = machineID; self.sortKey = sortKey
            self.options = options; self.linux = linux; self.initrd = initrd
        }
    }

    public static func entryID(machineID: String, release: String) -> String { "\(machineID)-\(release).conf" }

    /// What kernel-install's 90-loaderentry.install writes for `release`.
    public static func entryText(machineID: String, release: String, rootUUID: String) -> String {
        """
        # Boot Loader Specification type#1 entry
        # File created by /usr/lib/kernel/install.d/90-loaderentry.install (systemd \(systemdVersion))
        title      \(prettyName)
        version    \(release)
        machine-id \(machineID)
        sort-key   \(sortKey)
        options    root=UUID=\(rootUUID) ro quiet panic=10 systemd.machine_id=\(machineID)
        linux      /\(machineID)/\(release)/linux
        initrd     /\(machineID)/\(release)/initrd.img-\(release)

        """
    }

    /// `bootctl install`'s loader.conf (no `default`: the first entry in sort order boots).
    public static let loaderConf = "#timeout 3\n#console-mode keep\n"

    /// The boot loader's files on the ESP, as `bootctl install` puts them there.
    public static func installLoader(esp: String) throws {
        try mkdirs(esp + "/loader/entries")
        try mkdirs(esp + "/EFI/systemd")
        try mkdirs(esp + "/EFI/BOOT")
        try writeFile(esp + "/loader/loader.conf", loaderConf)
        try writeFile(esp + "/loader/entries.srel", "type1\n")
        try writeFile(esp + "/EFI/systemd/systemd-bootx64.efi", "fleetsim: simulated systemd-boot \(systemdVersion)\n")
        try writeFile(esp + "/EFI/BOOT/BOOTX64.EFI", "fleetsim: simulated systemd-boot \(systemdVersion)\n")
    }

    /// kernel-install add: the kernel and initrd (files in the host's /boot, as the package put them)
    /// copied to the ESP, and the entry written.
    public static func kernelInstallAdd(esp: String, machineID: String, rootUUID: String, release: String, image: String, initrds: [String]) throws {
        guard let kernel = readFile(image) else { throw FleetsimError("kernel-install: Failed to open kernel image '\(image)': No such file or directory") }
        let dir = esp + "/\(machineID)/\(release)"
        try mkdirs(dir)
        try writeFile(dir + "/linux", kernel)
        var initrd = "fleetsim: simulated initramfs for \(release)\n"
        for i in initrds { if let t = readFile(i) { initrd = t } }
        try writeFile(dir + "/initrd.img-\(release)", initrd)
        try mkdirs(esp + "/loader/entries")
        try writeFile(esp + "/loader/entries/" + entryID(machineID: machineID, release: release), entryText(machineID: machineID, release: release, rootUUID: rootUUID))
    }

    /// kernel-install remove: the entry and the kernel's folder on the ESP.
    public static func kernelInstallRemove(esp: String, machineID: String, release: String) {
        unlink(esp + "/loader/entries/" + entryID(machineID: machineID, release: release))
        try? FileManager.default.removeItem(atPath: esp + "/\(machineID)/\(release)")
    }

    /// The value of `key` in an entry file (`key value`, the last one wins as in systemd's parser;
    /// `initrd` may repeat).
    static func values(_ text: String, _ key: String) -> [String] {
        var out: [String] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = raw.drop { $0 == " " || $0 == "\t" }
            guard !line.hasPrefix("#"), line.hasPrefix(key) else { continue }
            let rest = line.dropFirst(key.count)
            guard let f = rest.first, f == " " || f == "\t" else { continue }
            out.append(String(rest.drop { $0 == " " || $0 == "\t" }))
        }
        return out
    }

    /// The entries on the ESP in systemd-boot's order: sort-key, machine-id, then the newest
    /// version first, then the id.
    public static func entries(esp: String) -> [Entry] {
        let dir = esp + "/loader/entries"
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".conf") }
        var out: [Entry] = []
        for f in files {
            guard let text = readFile(dir + "/" + f) else { continue }
            func v(_ k: String) -> String { values(text, k).last ?? "" }
            out.append(Entry(id: f, title: v("title"), version: v("version"), machineID: v("machine-id"), sortKey: v("sort-key"),
                             options: values(text, "options").joined(separator: " "), linux: v("linux"), initrd: values(text, "initrd")))
        }
        return out.sorted { a, b in
            if a.sortKey != b.sortKey { return a.sortKey < b.sortKey }
            if a.machineID != b.machineID { return a.machineID < b.machineID }
            if a.version != b.version { return Grub.versionLess(b.version, a.version) }
            return a.id < b.id
        }
    }

    /// The entry an EFI variable names: its id, or its id without `.conf` (older names).
    static func find(_ name: String, in entries: [Entry]) -> Entry? {
        entries.first { $0.id == name || $0.id == name + ".conf" }
    }

    /// loader.conf's `default` (a glob), nil when none.
    static func loaderDefault(_ conf: String?) -> String? {
        conf.flatMap { values($0, "default").last }
    }

    /// The release a kernel entry boots (`/<machine-id>/<release>/linux`; else its version).
    public static func release(of e: Entry) -> String {
        let parts = e.linux.split(separator: "/")
        if parts.count >= 2, parts.last == "linux" { return String(parts[parts.count - 2]) }
        return e.version
    }

    /// What systemd-boot boots now: the entry, and what the choice did to the variables
    /// (`LoaderEntryOneShot` removed as read; `LoaderEntrySelected` set to the entry booted).
    public static func choose(entries: [Entry], vars: [String: String], loaderConf: String?) -> (entry: Entry?, vars: [String: String], note: String?) {
        var vars = vars
        var note: String?
        var chosen: Entry?
        if let one = vars.removeValue(forKey: "LoaderEntryOneShot"), !one.isEmpty {
            chosen = find(one, in: entries)
            if chosen == nil { note = "LoaderEntryOneShot '\(one)' matches no entry" }
        }
        if chosen == nil, let def = vars["LoaderEntryDefault"], !def.isEmpty {
            chosen = find(def, in: entries)
            if chosen == nil { note = (note.map { $0 + "; " } ?? "") + "LoaderEntryDefault '\(def)' matches no entry" }
        }
        if chosen == nil, let pattern = loaderDefault(loaderConf) {
            chosen = entries.first { fnmatch(pattern, $0.id, 0) == 0 }
        }
        if chosen == nil { chosen = entries.first }
        if let c = chosen { vars["LoaderEntrySelected"] = c.id } else { vars.removeValue(forKey: "LoaderEntrySelected") }
        return (chosen, vars, note)
    }

    // MARK: EFI variables

    /// The host's EFI variables (`Name=value` lines).
    public static func readVars(_ path: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in (readFile(path) ?? "").split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            out[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return out
    }

    public static func writeVars(_ path: String, _ vars: [String: String]) {
        rewriteInPlace(path, vars.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)\n" }.joined())
    }

    // MARK: bootctl list

    /// A JSON string literal.
    static func json(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    /// `bootctl list --json=short|pretty` as systemd 257 prints it: one array, keys in its order.
    public static func listJSON(entries: [Entry], esp: String, vars: [String: String], loaderConf: String?, pretty: Bool) -> String {
        let defaultID = vars["LoaderEntryDefault"].flatMap { find($0, in: entries)?.id }
            ?? loaderDefault(loaderConf).flatMap { p in entries.first { fnmatch(p, $0.id, 0) == 0 }?.id }
            ?? entries.first?.id
        let selected = vars["LoaderEntrySelected"].flatMap { find($0, in: entries)?.id }
        let objects = entries.map { e -> [(String, String)] in
            var kv: [(String, String)] = [("type", json("type1")), ("source", json("esp")), ("id", json(e.id)),
                                          ("path", json(esp + "/loader/entries/" + e.id)), ("root", json(esp)),
                                          ("title", json(e.title)), ("showTitle", json(e.title.isEmpty ? e.id : e.title))]
            if !e.sortKey.isEmpty { kv.append(("sortKey", json(e.sortKey))) }
            if !e.version.isEmpty { kv.append(("version", json(e.version))) }
            if !e.machineID.isEmpty { kv.append(("machineId", json(e.machineID))) }
            if !e.options.isEmpty { kv.append(("options", json(e.options))) }
            if !e.linux.isEmpty { kv.append(("linux", json(e.linux))) }
            if !e.initrd.isEmpty { kv.append(("initrd", "[" + e.initrd.map(json).joined(separator: pretty ? ", " : ",") + "]")) }
            kv.append(("isReported", selected == nil ? "false" : "true"))
            if defaultID != nil { kv.append(("isDefault", e.id == defaultID ? "true" : "false")) }
            if selected != nil { kv.append(("isSelected", e.id == selected ? "true" : "false")) }
            kv.append(("addons", "[]"))
            if !e.options.isEmpty { kv.append(("cmdline", json(e.options))) }
            return kv
        }
        guard pretty else {
            return "[" + objects.map { "{" + $0.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}" }.joined(separator: ",") + "]"
        }
        guard !objects.isEmpty else { return "[]" }
        return "[\n" + objects.map { o in
            "\t{\n" + o.map { "\t\t\"\($0.0)\" : \($0.1)" }.joined(separator: ",\n") + "\n\t}"
        }.joined(separator: ",\n") + "\n]"
    }

    /// `bootctl list` without --json.
    public static func listText(entries: [Entry], esp: String, vars: [String: String], loaderConf: String?) -> String {
        guard !entries.isEmpty else { return "No boot loader entries found." }
        let defaultID = vars["LoaderEntryDefault"].flatMap { find($0, in: entries)?.id }
            ?? loaderDefault(loaderConf).flatMap { p in entries.first { fnmatch(p, $0.id, 0) == 0 }?.id }
            ?? entries.first?.id
        let selected = vars["LoaderEntrySelected"].flatMap { find($0, in: entries)?.id }
        func row(_ k: String, _ v: String) -> String { String(repeating: " ", count: max(0, 13 - k.count)) + k + ": " + v }
        return "Boot Loader Entries:\n" + entries.map { e in
            var lines = [row("type", "Boot Loader Specification Type #1 (.conf)"),
                         row("title", e.title + (e.id == defaultID ? " (default)" : "") + (e.id == selected ? " (selected)" : "")),
                         row("id", e.id), row("source", esp + "/loader/entries/" + e.id + " (on the EFI System Partition)")]
            if !e.sortKey.isEmpty { lines.append(row("sort-key", e.sortKey)) }
            if !e.version.isEmpty { lines.append(row("version", e.version)) }
            if !e.machineID.isEmpty { lines.append(row("machine-id", e.machineID)) }
            if !e.linux.isEmpty { lines.append(row("linux", esp + "/" + e.linux.drop { $0 == "/" })) }
            for (i, r) in e.initrd.enumerated() { lines.append(i == 0 ? row("initrd", esp + "/" + r.drop { $0 == "/" }) : String(repeating: " ", count: 15) + esp + "/" + r.drop { $0 == "/" }) }
            if !e.options.isEmpty { lines.append(row("options", e.options)) }
            return lines.joined(separator: "\n")
        }.joined(separator: "\n\n")
    }

    public static let osRelease = """
        PRETTY_NAME="Debian GNU/Linux 13 (trixie)"
        NAME="Debian GNU/Linux"
        VERSION_ID="13"
        VERSION="13 (trixie)"
        VERSION_CODENAME=trixie
        DEBIAN_VERSION_FULL=13.1
        ID=debian
        HOME_URL="https://www.debian.org/"
        SUPPORT_URL="https://www.debian.org/support"
        BUG_REPORT_URL="https://bugs.debian.org/"

        """
}

/// The tools of a systemd-boot host: `bootctl` (list, set-default, set-oneshot, status,
/// is-installed) on the host's ESP and EFI variables, and `kernel-install` (add, remove).
extension Shims {
    static func bootctl(hp: HostPaths, args: [String], _ o: inout Out) throws -> Int32 {
        var json: String?
        var verbs: [String] = []
        var i = 0
        let flags: Set<String> = ["--no-pager", "-q", "--quiet", "--graceful", "--no-variables", "--all-architectures"]
        let valued: Set<String> = ["--esp-path", "--boot-path", "--root", "--image", "--make-entry-directory", "--entry-token", "--install-source"]
        var endOfOptions = false
        while i < args.count {
            let a = args[i]
            i += 1
            if endOfOptions || !a.hasPrefix("-") || a == "-" { verbs.append(a); continue }
            if a == "--" { endOfOptions = true; continue }
            if a == "-h" || a == "--help" {
                o.out("bootctl [OPTIONS...] COMMAND ...")
                o.out("")
                o.out("Control EFI firmware boot settings and manage boot loader.")
                o.out("")
                o.out("Boot Loader Specification Commands:")
                o.out("  list                List boot loader entries")
                o.out("Boot Loader Interface Commands:")
                o.out("  set-default ID      Set default boot loader entry")
                o.out("  set-oneshot ID      Set default boot loader entry, for next boot only")
                o.out("systemd-boot Commands:")
                o.out("  is-installed        Test whether systemd-boot is installed in the ESP")
                return 0
            }
            let name = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
            var value: String? = a.contains("=") ? String(a[a.index(after: a.firstIndex(of: "=")!)...]) : nil
            if name == "--json" || valued.contains(name) {
                if value == nil {
                    guard i < args.count else {
                        o.err("bootctl: option '\(name)' requires an argument")
                        return 1
                    }
                    value = args[i]
                    i += 1
                }
                if name == "--json" {
                    guard ["short", "pretty", "off"].contains(value!) else {
                        o.err("Unknown argument to --json= suboption: \(value!)")
                        return 1
                    }
                    json = value == "off" ? nil : value
                }
                continue
            }
            if flags.contains(name) && value == nil { continue }
            o.err(a.hasPrefix("--") ? "bootctl: unrecognized option '\(a)'" : "bootctl: invalid option -- '\(a.dropFirst().prefix(1))'")
            return 1
        }
        let esp = hp.esp, espShown = "/boot/efi"
        let verb = verbs.first ?? "status"
        let known: [String: (Int, Int)] = ["status": (0, 0), "list": (0, 0), "set-default": (1, 1), "set-oneshot": (1, 1), "is-installed": (0, 0)]
        guard let (least, most) = known[verb] else {
            o.err("Unknown command verb '\(verb)'.")
            return 1
        }
        if verbs.count - 1 < least { o.err("Too few arguments."); return 1 }
        if verbs.count - 1 > most { o.err("Too many arguments."); return 1 }
        guard fileExists(esp + "/EFI") || fileExists(esp + "/loader") else {
            o.err("Couldn't find EFI system partition. It is recommended to mount it to /boot/ or /efi/.")
            o.err("Alternatively, use --esp-path= to specify path to mount point.")
            return 1
        }
        let vars = SystemdBoot.readVars(hp.efiVars)
        let loaderConf = readFile(esp + "/loader/loader.conf")
        let entries = SystemdBoot.entries(esp: esp)
        switch verb {
        case "list":
            if let json {
                o.out(SystemdBoot.listJSON(entries: entries, esp: espShown, vars: vars, loaderConf: loaderConf, pretty: json == "pretty"))
            } else {
                o.out(SystemdBoot.listText(entries: entries, esp: espShown, vars: vars, loaderConf: loaderConf))
            }
        case "is-installed":
            let installed = fileExists(esp + "/EFI/systemd/systemd-bootx64.efi")
            o.out(installed ? "yes" : "no")
            return installed ? 0 : 1
        case "status":
            o.out("System:")
            o.out("      Firmware: UEFI 2.70 (fleetsim 1.0)")
            o.out("  Secure Boot: disabled")
            o.out("")
            o.out("Current Boot Loader:")
            o.out("      Product: systemd-boot \(SystemdBoot.systemdVersion)")
            o.out("Default Boot Loader Entry:")
            o.out(SystemdBoot.listText(entries: entries.filter { $0.id == (vars["LoaderEntryDefault"].flatMap { SystemdBoot.find($0, in: entries)?.id } ?? entries.first?.id) },
                                       esp: espShown, vars: vars, loaderConf: loaderConf))
        default:
            let variable = verb == "set-default" ? "LoaderEntryDefault" : "LoaderEntryOneShot"
            var arg = verbs[1]
            switch arg {
            case "@current", "@default", "@oneshot":
                let from = ["@current": "LoaderEntrySelected", "@default": "LoaderEntryDefault", "@oneshot": "LoaderEntryOneShot"][arg]!
                guard let v = vars[from] else {
                    o.err("Failed to get EFI variable '\(from)': No such file or directory")
                    return 1
                }
                arg = v
            default: break
            }
            var next = vars
            // An empty id removes the variable (bootctl: `""` unsets it).
            if arg.isEmpty { next.removeValue(forKey: variable) } else { next[variable] = arg }
            SystemdBoot.writeVars(hp.efiVars, next)
        }
        return 0
    }

    static func kernelInstall(fleet: FleetConfig, host: String, hp: HostPaths, args: [String], _ o: inout Out) throws -> Int32 {
        let positional = args.filter { !$0.hasPrefix("-") }
        if args.contains("-h") || args.contains("--help") {
            o.out("kernel-install [OPTIONS...] COMMAND ...")
            o.out("")
            o.out("Add and remove kernel and initrd images to and from /boot/")
            o.out("")
            o.out("Commands:")
            o.out("  add [[[KERNEL-VERSION] KERNEL-IMAGE] [INITRD ...]]")
            o.out("  remove KERNEL-VERSION")
            return 0
        }
        for a in args where a.hasPrefix("-") && !["-v", "--verbose"].contains(a) {
            o.err("kernel-install: unrecognized option '\(a)'")
            return 1
        }
        guard let verb = positional.first else {
            o.err("Too few arguments.")
            return 1
        }
        guard let cfg = fleet.host(named: host) else { throw FleetsimError("kernel-install: no host \(host) in this fleet") }
        switch verb {
        case "add":
            guard positional.count >= 3 else {
                o.err("Too few arguments.")
                return 1
            }
            let release = positional[1]
            try SystemdBoot.kernelInstallAdd(esp: hp.esp, machineID: cfg.machineID, rootUUID: cfg.rootUUID, release: release,
                                             image: hostPath(positional[2], hp), initrds: positional.dropFirst(3).map { hostPath($0, hp) })
        case "remove":
            guard positional.count == 2 else {
                o.err(positional.count < 2 ? "Too few arguments." : "Too many arguments.")
                return 1
            }
            SystemdBoot.kernelInstallRemove(esp: hp.esp, machineID: cfg.machineID, release: positional[1])
        default:
            o.err("Unknown command verb '\(verb)'.")
            return 1
        }
        return 0
    }

    /// What the kernel package's `/etc/kernel/postinst.d/zz-systemd-boot` does: kernel-install add.
    static func zzSystemdBoot(fleet: FleetConfig, host: String, hp: HostPaths, release: String, _ o: inout Out) throws {
        o.out("/etc/kernel/postinst.d/zz-systemd-boot:")
        let status = try kernelInstall(fleet: fleet, host: host, hp: hp, args: ["add", release, "/boot/vmlinuz-\(release)", "/boot/initrd.img-\(release)"], &o)
        guard status == 0 else { throw FleetsimError("run-parts: /etc/kernel/postinst.d/zz-systemd-boot exited with return code \(status)", exitCode: 100) }
    }
}
