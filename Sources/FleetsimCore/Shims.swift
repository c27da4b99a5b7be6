import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The commands a simulated host runs instead of the real ones (`fleetsim shim HOSTDIR NAME ARGS...`).
public enum Shims {
    struct Out {
        var stdout = ""
        var stderr = ""
        mutating func out(_ s: String) { stdout += s + "\n" }
        mutating func err(_ s: String) { stderr += s + "\n" }
    }

    /// Runs a shim; returns its exit status. Output goes to stdout/stderr.
    public static func run(hostDir: String, name: String, args: [String]) -> Int32 {
        var o = Out()
        let status: Int32
        do {
            status = try dispatch(hostDir: hostDir, name: name, args: args, &o)
        } catch let e as FleetsimError {
            o.err(e.message)
            status = e.exitCode
        } catch {
            o.err("\(name): \(error)")
            status = 1
        }
        FileHandle.standardOutput.write(Data(o.stdout.utf8))
        FileHandle.standardError.write(Data(o.stderr.utf8))
        return status
    }

    static func dispatch(hostDir: String, name: String, args: [String], _ o: inout Out) throws -> Int32 {
        let hp = HostPaths(hostDir)
        let dir = URL(fileURLWithPath: hostDir).deletingLastPathComponent().deletingLastPathComponent().path
        let hostName = URL(fileURLWithPath: hostDir).lastPathComponent
        if let owners = flavourOf[name] {
            // Every host has every shim (one host-init for all); a tool of another distribution
            // is not installed there, and says so the way the shell does.
            let fleet = try FleetConfig.load(dir: dir)
            let flavour = fleet.host(named: hostName)?.flavour ?? .debian
            guard owners.contains(flavour.family) else {
                o.err("bash: line 1: \(name): command not found")
                return 127
            }
            switch name {
            case "dnf": return try dnf(fleet: fleet, host: hostName, hp: hp, args: args, &o)
            case "rpm": return rpm(hp: hp, args: args, &o)
            case "grubby": return try grubby(hp: hp, args: args, &o)
            case "grub2-reboot", "grub2-set-default": return try grubSetEntry(name: name, file: hp.grub2Env, args: args, &o)
            case "grub2-editenv": return try grubEditenv(hp: hp, tool: name, defaultFile: hp.grub2Env, args: args, &o)
            case "grub2-probe": return grubProbe(hp: hp, tool: name, args: args, &o)
            case "bootctl": return try bootctl(hp: hp, args: args, &o)
            case "kernel-install": return try kernelInstall(fleet: fleet, host: hostName, hp: hp, args: args, &o)
            default: break
            }
        }
        switch name {
        case "apt-get":
            let fleet = try FleetConfig.load(dir: dir)
            return try aptGet(fleet: fleet, host: hostName, hp: hp, args: args, &o)
        case "dpkg":
            let fleet = try FleetConfig.load(dir: dir)
            return try dpkg(fleet: fleet, host: hostName, hp: hp, args: args, &o)
        case "update-grub":
            let fleet = try FleetConfig.load(dir: dir)
            updateGrub(fleet: fleet, host: hostName, hp: hp, &o)
            return 0
        case "grub-reboot", "grub-set-default":
            return try grubSetEntry(name: name, file: hp.grubEnv, args: args, &o)
        case "grub-editenv":
            return try grubEditenv(hp: hp, tool: name, defaultFile: hp.grubEnv, args: args, &o)
        case "grub-probe":
            return grubProbe(hp: hp, tool: name, args: args, &o)
        case "reboot", "shutdown":
            if name == "shutdown" && !(args.contains("-r") || args.contains("--reboot")) {
                o.err("fleetsim: shutdown without -r (power off) is not simulated; use `fleetsim set HOST power=off`")
                return 1
            }
            try requestReboot(dir: dir, host: hostName)
            return 0
        case "systemctl":
            let verbs = args.filter { !$0.hasPrefix("-") }
            switch verbs.first {
            case "reboot", "kexec":
                try requestReboot(dir: dir, host: hostName)
                return 0
            case "is-system-running":
                o.out("running")
                return 0
            default:
                o.err("fleetsim: systemctl \(args.joined(separator: " ")) is not simulated on this host")
                return 1
            }
        case "uname":
            return uname(hostName: hostName, hp: hp, args: args, &o)
        case "hostname":
            if let a = args.first(where: { !$0.hasPrefix("-") }) {
                o.err("hostname: you must be root to change the host name (fleetsim: \(a) not set)")
                return 1
            }
            o.out(hostName)
            return 0
        default:
            o.err("fleetsim: unknown shim \(name)")
            return 127
        }
    }

    /// `uname` with the simulated release and host name; other fields from the real machine.
    static func uname(hostName: String, hp: HostPaths, args: [String], _ o: inout Out) -> Int32 {
        var u = utsname()
        _ = Glibc.uname(&u)
        func field<T>(_ v: T) -> String {
            withUnsafeBytes(of: v) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        let release = (readFile(hp.osrelease) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let os = (readFile(hp.osRelease) ?? "").split(separator: "\n").first { $0.hasPrefix("ID=") }
        let version = os == "ID=ubuntu" ? Ubuntu.unameVersion(release)
            : os == "ID=\"rhel\"" ? "#1 SMP PREEMPT_DYNAMIC Thu Apr  4 20:53:41 EDT 2024 (fleetsim)"
            : "#1 SMP PREEMPT_DYNAMIC Debian \(debVersion(release)) (fleetsim)"
        let machine = field(u.machine)
        var flags = Set<Character>()
        for a in args {
            switch a {
            case "--all": flags.formUnion("snrvmo")
            case "--kernel-name": flags.insert("s")
            case "--nodename": flags.insert("n")
            case "--kernel-release": flags.insert("r")
            case "--kernel-version": flags.insert("v")
            case "--machine": flags.insert("m")
            case "--operating-system": flags.insert("o")
            default:
                guard a.hasPrefix("-"), !a.hasPrefix("--") else {
                    o.err("uname: extra operand '\(a)'")
                    return 1
                }
                for ch in a.dropFirst() {
                    if ch == "a" { flags.formUnion("snrvmo") } else if "snrvmpio".contains(ch) { flags.insert(ch) } else {
                        o.err("uname: invalid option -- '\(ch)'")
                        return 1
                    }
                }
            }
        }
        if flags.isEmpty { flags.insert("s") }
        var parts: [String] = []
        if flags.contains("s") { parts.append("Linux") }
        if flags.contains("n") { parts.append(hostName) }
        if flags.contains("r") { parts.append(release) }
        if flags.contains("v") { parts.append(version) }
        if flags.contains("m") { parts.append(machine) }
        if flags.contains("p") && !args.contains(where: { $0.contains("a") && !$0.hasPrefix("--") }) { parts.append("unknown") }
        if flags.contains("i") && !args.contains(where: { $0.contains("a") && !$0.hasPrefix("--") }) { parts.append("unknown") }
        if flags.contains("o") { parts.append("GNU/Linux") }
        o.out(parts.joined(separator: " "))
        return 0
    }

    static func requestReboot(dir: String, host: String) throws {
        try postRequest(dir: dir, kind: "reboot", body: host + "\n")
    }

    /// Drops a request file for the supervisor (written under a temporary name, then renamed).
    @discardableResult
    public static func postRequest(dir: String, kind: String, body: String) throws -> String {
        let L = Layout(dir: dir)
        let name = String(format: "%016llx-%d-%08x.%@", UInt64(now() * 1e6), getpid(), UInt32.random(in: 0...UInt32.max), kind)
        let path = L.requests + "/" + name
        let tmp = path + ".tmp"
        guard rewriteInPlace(tmp, body) else { throw FleetsimError("cannot write \(tmp)") }
        rename(tmp, path)
        return path
    }

    // MARK: grub-reboot, grub-set-default (grub2-* on RHEL)

    /// `grub-reboot ENTRY` writes next_entry, `grub-set-default ENTRY` saved_entry; the entry is
    /// not checked, as in GRUB.
    static func grubSetEntry(name: String, file: String, args: [String], _ o: inout Out) throws -> Int32 {
        let key = name.hasSuffix("-reboot") ? "next_entry" : "saved_entry"
        let positional = args.filter { !$0.hasPrefix("--boot-directory") && $0 != "--" }
        if args.contains("--help") || args.contains("-h") {
            o.out("Usage: \(name) [OPTION] MENU_ENTRY")
            return 0
        }
        guard let entry = positional.first else {
            o.err("\(name): entry not specified.")
            o.err("Usage: \(name) [OPTION] MENU_ENTRY")
            return 1
        }
        try Grub.setEnv(file, key, entry)
        return 0
    }

    // MARK: grub-editenv (grub2-editenv on RHEL)

    /// A path as the host sees it: its /boot is the host's own boot dir.
    static func hostPath(_ p: String, _ hp: HostPaths) -> String {
        p.hasPrefix("/boot/") ? hp.boot + "/" + p.dropFirst("/boot/".count) : p
    }

    static func grubEditenv(hp: HostPaths, tool: String, defaultFile: String, args: [String], _ o: inout Out) throws -> Int32 {
        var rest = args.filter { $0 != "-v" && $0 != "--verbose" }
        guard !rest.isEmpty else {
            o.err("\(tool): error: you need to specify at least one command.")
            return 1
        }
        var file = defaultFile
        let commands = ["list", "set", "unset", "create"]
        if !commands.contains(rest[0]) {
            let f = rest.removeFirst()
            if f != "-" { file = hostPath(f, hp) }
        }
        guard let cmd = rest.first else {
            o.err("\(tool): error: you need to specify at least one command.")
            return 1
        }
        switch cmd {
        case "list":
            guard fileExists(file) else {
                o.err("\(tool): error: cannot open `\(file)': No such file or directory.")
                return 1
            }
            for (k, v) in Grub.readEnv(file) { o.out("\(k)=\(v)") }
        case "set":
            for kv in rest.dropFirst() {
                guard let eq = kv.firstIndex(of: "=") else {
                    o.err("\(tool): error: invalid parameter \(kv).")
                    return 1
                }
                try Grub.setEnv(file, String(kv[..<eq]), String(kv[kv.index(after: eq)...]))
            }
        case "unset":
            for k in rest.dropFirst() { try Grub.unsetEnv(file, k) }
        case "create":
            try Grub.writeEnv(file, [])
        default:
            o.err("\(tool): error: unrecognized command `\(cmd)'.")
            return 1
        }
        return 0
    }

    // MARK: grub-probe

    /// `grub-probe --target=abstraction|fs PATH` (`grub2-probe` on RHEL): what /boot is on, from the
    /// host's live settings (`fleetsim set HOST boot_abstraction=lvm boot_fs=btrfs`): no abstraction
    /// and ext2 by default.
    static func grubProbe(hp: HostPaths, tool: String, args: [String], _ o: inout Out) -> Int32 {
        var target: String?, paths: [String] = [], rest = args[...]
        while let a = rest.popFirst() {
            if a.hasPrefix("--target=") { target = String(a.dropFirst("--target=".count)) }
            else if a == "-t" || a == "--target" { target = rest.popFirst() }
            else if !a.hasPrefix("-") { paths.append(a) }
        }
        guard paths.count == 1 else {
            o.err("\(tool): error: one argument expected.")
            return 1
        }
        let live = LiveOverrides.load(hp.live).lines
        func value(_ key: String, _ fallback: String) -> String { live.last { $0.0 == key }?.1 ?? fallback }
        switch target ?? "fs" {
        case "abstraction": o.out(value("boot_abstraction", "").replacingOccurrences(of: ",", with: " "))
        case "fs": o.out(value("boot_fs", "ext2"))
        default:
            o.err("fleetsim: \(tool) --target=\(target ?? "") is not simulated (abstraction and fs are)")
            return 1
        }
        return 0
    }

    // MARK: update-grub

    static func updateGrub(fleet: FleetConfig, host: String, hp: HostPaths, _ o: inout Out) {
        let uuid = fleet.host(named: host)?.rootUUID ?? "00000000-0000-0000-0000-000000000000"
        let flavour = fleet.host(named: host)?.flavour ?? .debian
        let kernels = Grub.installedKernels(bootDir: hp.boot)
        if flavour == .ubuntu { o.err("Sourcing file `/etc/default/grub'") }
        o.err("Generating grub configuration file ...")
        for k in kernels {
            o.err("Found linux image: /boot/vmlinuz-\(k)")
            o.err("Found initrd image: /boot/initrd.img-\(k)")
        }
        if flavour == .ubuntu {
            o.err("Warning: os-prober will not be executed to detect other bootable partitions.")
            o.err("Systems on them will not be added to the GRUB boot configuration.")
            o.err("Check GRUB_DISABLE_OS_PROBER documentation entry.")
        }
        o.err("done")
        rewriteInPlace(hp.grubCfg, Grub.config(kernels: kernels, rootUUID: uuid, flavour: flavour,
                                               defaults: Grub.readDefaults(hp.root + "/etc-default/grub")))
    }

    // MARK: apt-get

    static func aptGet(fleet: FleetConfig, host: String, hp: HostPaths, args: [String], _ o: inout Out) throws -> Int32 {
        var positional: [String] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            if a == "-o" || a == "-c" || a == "-t" { i += 2; continue }
            if a.hasPrefix("-") { i += 1; continue }
            positional.append(a)
            i += 1
        }
        guard let cmd = positional.first else {
            o.err("E: Invalid operation")
            return 100
        }
        // Ubuntu's archive and package versions on an ubuntu host; the rest is apt's.
        let ubuntu = fleet.host(named: host)?.flavour == .ubuntu
        let archive = ubuntu ? "http://archive.ubuntu.com/ubuntu noble" : "http://deb.fleetsim.test/debian bookworm"
        let pocket = ubuntu ? "noble-updates/main" : "bookworm/main"
        func debVersion(_ rel: String) -> String { ubuntu ? Ubuntu.packageVersion(rel) : Shims.debVersion(rel) }
        switch cmd {
        case "update":
            o.out("Hit:1 \(archive) InRelease")
            o.out("Reading package lists... Done")
            return 0
        case "install":
            break
        default:
            o.err("fleetsim: apt-get \(cmd) is not simulated (only install and update)")
            return 100
        }
        let pkgs = positional.dropFirst().map { p -> String in
            if let eq = p.firstIndex(of: "=") { return String(p[..<eq]) }
            return p
        }
        o.out("Reading package lists... Done")
        o.out("Building dependency tree... Done")
        o.out("Reading state information... Done")
        guard !pkgs.isEmpty else {
            o.out("0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.")
            return 0
        }
        var toInstall: [String] = []
        for p in pkgs {
            guard p.hasPrefix("linux-image-") else {
                o.err("E: Unable to locate package \(p)")
                return 100
            }
            let rel = String(p.dropFirst("linux-image-".count))
            guard fleet.scenario.kernels[rel] != nil else {
                o.err("E: Unable to locate package \(p)")
                o.err("E: Couldn't find any package by glob '\(p)'")
                return 100
            }
            if fileExists(hp.boot + "/vmlinuz-\(rel)") {
                o.out("\(p) is already the newest version (\(debVersion(rel))).")
            } else {
                toInstall.append(rel)
            }
        }
        guard !toInstall.isEmpty else {
            o.out("0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.")
            return 0
        }
        o.out("The following NEW packages will be installed:")
        o.out("  " + toInstall.map { "linux-image-\($0)" }.joined(separator: " "))
        o.out("0 upgraded, \(toInstall.count) newly installed, 0 to remove and 0 not upgraded.")
        o.out("Need to get \(68 * toInstall.count).4 MB of archives.")
        o.out("After this operation, \(412 * toInstall.count) MB of additional disk space will be used.")
        for (n, rel) in toInstall.enumerated() {
            o.out("Get:\(n + 1) \(archive.split(separator: " ")[0]) \(pocket) amd64 linux-image-\(rel) amd64 \(debVersion(rel)) [68.4 MB]")
        }
        o.out("Fetched \(68 * toInstall.count).4 MB in 1s (68.4 MB/s)")
        let live = LiveOverrides.load(hp.live)
        let bootFull = live.bootFull ?? fleet.scenario.hosts[host]?.bootFull ?? false
        for rel in toInstall {
            let deb = "/var/cache/apt/archives/linux-image-\(rel)_\(debVersion(rel))_amd64.deb"
            o.out("Selecting previously unselected package linux-image-\(rel).")
            o.out("(Reading database ... 41876 files and directories currently installed.)")
            o.out("Preparing to unpack .../linux-image-\(rel)_\(debVersion(rel))_amd64.deb ...")
            o.out("Unpacking linux-image-\(rel) (\(debVersion(rel))) ...")
            if bootFull {
                o.err("dpkg: error processing archive \(deb) (--unpack):")
                o.err(" cannot copy extracted data for './boot/vmlinuz-\(rel)' to '/boot/vmlinuz-\(rel).dpkg-new': failed to write (No space left on device)")
                o.err("No apport report written because the error message indicates a disk full error")
                o.err("dpkg-deb: error: paste subprocess was killed by signal (Broken pipe)")
                o.out("Errors were encountered while processing:")
                o.out(" \(deb)")
                o.err("E: Sub-process /usr/bin/dpkg returned an error code (1)")
                return 100
            }
            try Setup.installKernelFiles(bootDir: hp.boot, release: rel)
            o.out("Setting up linux-image-\(rel) (\(debVersion(rel))) ...")
            o.out("I: /vmlinuz is now a symlink to boot/vmlinuz-\(rel)")
            o.out("I: /initrd.img is now a symlink to boot/initrd.img-\(rel)")
            o.out("/etc/kernel/postinst.d/initramfs-tools:")
            o.out("update-initramfs: Generating /boot/initrd.img-\(rel)")
            try kernelHooks(fleet: fleet, host: host, hp: hp, release: rel, &o)
        }
        return 0
    }

    // MARK: dpkg

    /// `dpkg -i FILE...`: each file is read with the real `dpkg-deb` (a package built with
    /// `dpkg-deb --build`); a `linux-image-<release>` package whose data has
    /// `./boot/vmlinuz-<release>` installs that kernel as apt-get does (files in /boot,
    /// update-grub). Any other package, a file that is not a Debian package, or one without
    /// the kernel image fails as dpkg fails (exit 1, nothing installed). Other verbs exit 2.
    static func dpkg(fleet: FleetConfig, host: String, hp: HostPaths, args: [String], _ o: inout Out) throws -> Int32 {
        var files: [String] = []
        var install = false
        for a in args {
            if a == "-i" || a == "--install" { install = true } else if a == "--" { continue } else if a.hasPrefix("-") {
                if a.hasPrefix("--force") || a == "--no-triggers" { continue }
                o.err("fleetsim: dpkg \(a) is not simulated (only -i FILE...)")
                return 2
            } else { files.append(a) }
        }
        guard install else {
            o.err("fleetsim: dpkg \(args.joined(separator: " ")) is not simulated (only -i FILE...)")
            return 2
        }
        guard !files.isEmpty else {
            o.err("dpkg: error: --install needs at least one package archive file argument")
            return 2
        }
        var kernels: [(file: String, release: String, version: String)] = []
        for f in files {
            let field = runCapturing("/usr/bin/dpkg-deb", ["--field", f, "Package", "Version"])
            guard field.status == 0 else {
                o.err("dpkg-deb: error: '\(f)' is not a Debian format archive")
                o.err("dpkg: error processing archive \(f) (--install):")
                o.err(" dpkg-deb --control subprocess returned error exit status 2")
                o.out("Errors were encountered while processing:")
                o.out(" \(f)")
                return 1
            }
            var package = "", version = ""
            for line in field.stdout.split(separator: "\n") {
                if line.hasPrefix("Package: ") { package = String(line.dropFirst("Package: ".count)) }
                if line.hasPrefix("Version: ") { version = String(line.dropFirst("Version: ".count)) }
            }
            guard package.hasPrefix("linux-image-") else {
                o.err("fleetsim: dpkg -i of \(package.isEmpty ? f : package) is not simulated (only linux-image-<release> packages)")
                return 1
            }
            let release = String(package.dropFirst("linux-image-".count))
            let contents = runCapturing("/usr/bin/dpkg-deb", ["--contents", f])
            let names = contents.stdout.split(separator: "\n").compactMap { $0.split(separator: " ", omittingEmptySubsequences: true).last }
            guard contents.status == 0, names.contains(where: { $0 == "./boot/vmlinuz-\(release)" }) else {
                o.err("dpkg: error processing archive \(f) (--install):")
                o.err(" fleetsim: \(package) has no ./boot/vmlinuz-\(release)")
                o.out("Errors were encountered while processing:")
                o.out(" \(f)")
                return 1
            }
            kernels.append((f, release, version))
        }
        let live = LiveOverrides.load(hp.live)
        let bootFull = live.bootFull ?? fleet.scenario.hosts[host]?.bootFull ?? false
        for k in kernels {
            o.out("Selecting previously unselected package linux-image-\(k.release).")
            o.out("(Reading database ... 41876 files and directories currently installed.)")
            o.out("Preparing to unpack \(k.file) ...")
            o.out("Unpacking linux-image-\(k.release) (\(k.version)) ...")
            if bootFull {
                o.err("dpkg: error processing archive \(k.file) (--install):")
                o.err(" cannot copy extracted data for './boot/vmlinuz-\(k.release)' to '/boot/vmlinuz-\(k.release).dpkg-new': failed to write (No space left on device)")
                o.out("Errors were encountered while processing:")
                o.out(" \(k.file)")
                return 1
            }
        }
        for k in kernels {
            try Setup.installKernelFiles(bootDir: hp.boot, release: k.release)
            try appendFile(hp.root + "/dpkg.log", "install \(k.release) \(k.version) \(k.file)\n")
            o.out("Setting up linux-image-\(k.release) (\(k.version)) ...")
            try kernelHooks(fleet: fleet, host: host, hp: hp, release: k.release, &o)
        }
        return 0
    }

    /// The kernel package's /etc/kernel/postinst.d hooks: update-grub on a GRUB host, kernel-install
    /// (systemd-boot's zz-systemd-boot) on a systemd-boot host.
    static func kernelHooks(fleet: FleetConfig, host: String, hp: HostPaths, release: String, _ o: inout Out) throws {
        if fleet.host(named: host)?.flavour == .systemdBoot {
            try zzSystemdBoot(fleet: fleet, host: host, hp: hp, release: release, &o)
        } else {
            o.out("/etc/kernel/postinst.d/zz-update-grub:")
            updateGrub(fleet: fleet, host: host, hp: hp, &o)
        }
    }

    /// A plausible Debian package version for a release (6.1.0-19-hosting -> 6.1.76-1+hosting19).
    static func debVersion(_ rel: String) -> String {
        let parts = rel.split(separator: "-")
        let abi = parts.count > 1 ? String(parts[1]) : "1"
        let base = parts.first.map(String.init) ?? rel
        let upstream = base.split(separator: ".").prefix(2).joined(separator: ".")
        return "\(upstream).\(60 + (Int(abi) ?? 0))-1+fleetsim\(abi)"
    }
}
