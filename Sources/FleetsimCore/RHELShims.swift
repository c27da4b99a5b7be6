import Foundation

/// The tools of a rhel host: `dnf install kernel-<release>` or a kernel package file (with
/// kernel-install's BLS entry and UPDATEDEFAULT), `rpm -q` and `rpm -qp`, and `grubby` as RHEL
/// 9's grubby-bls behaves for what rollctl and an admin use (`--info`, `--default-*`, `--set-default`).
extension Shims {
    /// The flavours a tool is installed on; a tool not listed exists on every host.
    static let flavourOf: [String: Set<Flavour>] = [
        "apt-get": [.debian, .systemdBoot], "dpkg": [.debian, .systemdBoot],
        "update-grub": [.debian], "grub-reboot": [.debian], "grub-set-default": [.debian], "grub-editenv": [.debian], "grub-probe": [.debian],
        "dnf": [.rhel], "rpm": [.rhel], "grubby": [.rhel], "grub2-reboot": [.rhel], "grub2-set-default": [.rhel], "grub2-editenv": [.rhel], "grub2-probe": [.rhel],
        "bootctl": [.systemdBoot], "kernel-install": [.systemdBoot],
    ]

    // MARK: dnf

    static func dnf(fleet: FleetConfig, host: String, hp: HostPaths, args: [String], _ o: inout Out) throws -> Int32 {
        var positional: [String] = []
        var assumeYes = false
        for a in args {
            switch a {
            case "-y", "--assumeyes": assumeYes = true
            case "-q", "--quiet", "-C", "--cacheonly", "--refresh", "--best", "--nobest": continue
            default:
                if a.hasPrefix("-") {
                    // Short flags grouped (`-yq`) carry -y too; anything else is accepted and ignored.
                    if !a.hasPrefix("--") && a.dropFirst().contains("y") { assumeYes = true }
                    continue
                }
                positional.append(a)
            }
        }
        guard let cmd = positional.first else {
            o.err("usage: dnf [options] COMMAND")
            o.err("Error: No command given.")
            return 1
        }
        let checked = "Last metadata expiration check: 0:07:12 ago on Sun 06 Dec 2026 06:00:00 AM UTC."
        switch cmd {
        case "install":
            break
        case "makecache":
            o.out("Metadata cache created.")
            return 0
        default:
            o.err("fleetsim: dnf \(cmd) is not simulated (only install and makecache)")
            return 1
        }
        let pkgs = Array(positional.dropFirst())
        guard !pkgs.isEmpty else {
            o.err("Error: Need to pass a list of pkgs to install")
            return 1
        }
        o.out(checked)
        // An argument ending in .rpm is a local file, as dnf's parser takes it (`./x.rpm`, `/path/x.rpm`).
        let local: [LocalKernel]
        switch localKernels(pkgs.filter { $0.hasSuffix(".rpm") }) {
        case .success(let l): local = l
        case .failure(let refusal):
            o.err(refusal.message)
            return 1
        }
        var toInstall: [String] = []
        for p in pkgs where !p.hasSuffix(".rpm") {
            // kernel-<release>, optionally with the architecture (kernel-5.14.0-427.el9.x86_64).
            var rel = p.hasPrefix("kernel-") ? String(p.dropFirst("kernel-".count)) : ""
            if fleet.scenario.kernels[rel] == nil, rel.hasSuffix(".x86_64") { rel = String(rel.dropLast(".x86_64".count)) }
            guard !rel.isEmpty, fleet.scenario.kernels[rel] != nil else {
                o.out("No match for argument: \(p)")
                o.err("Error: Unable to find a match: \(p)")
                return 1
            }
            if fileExists(hp.boot + "/vmlinuz-\(rel)") {
                o.out("Package kernel-\(rel).x86_64 is already installed.")
            } else if !toInstall.contains(rel) {
                toInstall.append(rel)
            }
        }
        var files: [LocalKernel] = []
        for k in local {
            if fileExists(hp.boot + "/vmlinuz-\(k.release)") {
                o.out("Package \(k.package.nvra) is already installed.")
            } else if !toInstall.contains(k.release), !files.contains(where: { $0.release == k.release }) {
                files.append(k)
            }
        }
        o.out("Dependencies resolved.")
        guard !toInstall.isEmpty || !files.isEmpty else {
            o.out("Nothing to do.")
            o.out("Complete!")
            return 0
        }
        let rule = String(repeating: "=", count: 80)
        func row(_ name: String, _ arch: String, _ rel: String, _ repo: String, _ size: String) -> String {
            " " + name.padding(toLength: 20, withPad: " ", startingAt: 0) + " " + arch.padding(toLength: 7, withPad: " ", startingAt: 0) + " "
                + rel.padding(toLength: 28, withPad: " ", startingAt: 0) + " " + repo.padding(toLength: 16, withPad: " ", startingAt: 0) + " " + size
        }
        o.out(rule)
        o.out(" Package              Arch    Version                      Repository       Size")
        o.out(rule)
        o.out("Installing:")
        for rel in toInstall { o.out(row("kernel", "x86_64", rel, "fleetsim-baseos", "4.6 M")) }
        for k in files {
            o.out(row(k.package.name, k.package.arch, "\(k.package.version)-\(k.package.release)", "@commandline", String(format: "%.1f M", Double(k.bytes) / 1_048_576)))
        }
        if !toInstall.isEmpty {
            o.out("Installing dependencies:")
            for rel in toInstall {
                o.out(row("kernel-core", "x86_64", rel, "fleetsim-baseos", "20 M"))
                o.out(row("kernel-modules", "x86_64", rel, "fleetsim-baseos", "38 M"))
            }
        }
        o.out("")
        o.out("Transaction Summary")
        o.out(rule)
        o.out("Install  \(toInstall.count * 3 + files.count) Packages")
        o.out("")
        let localMiB = Double(files.reduce(0) { $0 + $1.bytes }) / 1_048_576
        if toInstall.isEmpty {
            o.out("Total size: " + String(format: "%.1f M", localMiB))
        } else {
            o.out("Total download size: \(63 * toInstall.count) M")
        }
        o.out("Installed size: " + (files.isEmpty ? "\(101 * toInstall.count) M" : String(format: "%.1f M", Double(101 * toInstall.count) + localMiB)))
        guard assumeYes else {
            // No terminal to answer the question: dnf reads EOF and gives up.
            o.out("Is this ok [y/N]: Operation aborted.")
            return 1
        }
        o.out("Downloading Packages:")
        o.out("Running transaction check")
        o.out("Transaction check succeeded.")
        o.out("Running transaction test")
        let live = LiveOverrides.load(hp.live)
        if live.bootFull ?? fleet.scenario.hosts[host]?.bootFull ?? false {
            o.out("The downloaded packages were saved in cache until the next successful transaction.")
            o.out("You can remove cached packages by executing 'dnf clean packages'.")
            o.err("Error: Transaction test error:")
            let names = toInstall.map { "kernel-core-\($0).x86_64" } + files.map(\.package.nvra)
            for n in names { o.err("  installing package \(n) needs 62MB more space on the /boot filesystem") }
            o.err("")
            o.err("Error Summary")
            o.err("-------------")
            o.err("Disk Requirements:")
            o.err("   At least \(62 * names.count)MB more space needed on the /boot filesystem.")
            o.err("")
            return 1
        }
        o.out("Transaction test succeeded.")
        o.out("Running transaction")
        let total = toInstall.count * 3 + files.count
        var n = 0
        let machineID = fleet.host(named: host)?.machineID ?? (readFile(hp.machineID) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let updateDefault = BLS.updateDefault(sysconfig: readFile(hp.sysconfigKernel))
        // The package's %posttrans: kernel-install add, which writes the BLS entry and, with
        // UPDATEDEFAULT=yes in /etc/sysconfig/kernel, makes the new kernel the saved default.
        func kernelInstall(_ rel: String, scriptlet nvra: String) throws {
            try BLS.installKernel(bootDir: hp.boot, release: rel, machineID: machineID)
            o.out("  Running scriptlet: \(nvra)".padding(toLength: 72, withPad: " ", startingAt: 0) + "\(n)/\(total)")
            if updateDefault {
                try Grub.setEnv(hp.grub2Env, "saved_entry", BLS.entryID(machineID: machineID, release: rel))
            }
        }
        for rel in toInstall {
            for pkg in ["kernel-core", "kernel-modules", "kernel"] {
                n += 1
                o.out("  Installing       : \(pkg)-\(rel).x86_64".padding(toLength: 72, withPad: " ", startingAt: 0) + "\(n)/\(total)")
            }
            try kernelInstall(rel, scriptlet: "kernel-core-\(rel).x86_64")
        }
        for k in files {
            n += 1
            o.out("  Installing       : \(k.package.nvra)".padding(toLength: 72, withPad: " ", startingAt: 0) + "\(n)/\(total)")
            try kernelInstall(k.release, scriptlet: k.package.nvra)
            // What rpm -q answers from, and the tests' evidence of which file was installed.
            try appendFile(hp.dnfLog, "install \(k.package.nvra) \(k.release) \(k.path)\n")
        }
        o.out("")
        o.out("Installed:")
        for rel in toInstall {
            o.out("  kernel-\(rel).x86_64   kernel-core-\(rel).x86_64   kernel-modules-\(rel).x86_64")
        }
        for k in files { o.out("  \(k.package.nvra)") }
        o.out("")
        o.out("Complete!")
        return 0
    }

    /// A kernel package file named on dnf's command line.
    struct LocalKernel {
        var path: String
        var package: RPMPackage
        var release: String
        var bytes: UInt64
    }

    struct Refusal: Error { var message: String }

    /// Reads the .rpm files as dnf loads command-line packages: one that cannot be read as an
    /// RPM fails the command ("Can not load RPM file"); a source package, one of another
    /// architecture, and (fleetsim's own limit) one that carries no kernel image are refused.
    static func localKernels(_ paths: [String]) -> Result<[LocalKernel], Refusal> {
        var out: [LocalKernel] = []
        var unreadable: [String] = []
        var lines: [String] = []
        for p in paths {
            guard let pkg = try? RPMFile.read(path: p) else {
                lines.append("Can not load RPM file: \(p).")
                unreadable.append(p)
                continue
            }
            if !unreadable.isEmpty { continue }
            if pkg.isSource {
                return .failure(Refusal(message: "Error: Will not install a source rpm package (\(pkg.nvra))."))
            }
            guard pkg.arch == "x86_64" || pkg.arch == "noarch" else {
                return .failure(Refusal(message: "Error: \n Problem: conflicting requests\n  - package \(pkg.nvra) does not have a compatible architecture"))
            }
            guard let rel = pkg.kernelRelease else {
                return .failure(Refusal(message: "fleetsim: dnf install of \(pkg.nvra) (\(p)) is not simulated: only kernel packages, whose files have /boot/vmlinuz-<release> or /lib/modules/<release>/vmlinuz"))
            }
            let absolute = p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
            let bytes = (try? FileManager.default.attributesOfItem(atPath: p)[.size] as? UInt64) ?? 0
            out.append(LocalKernel(path: URL(fileURLWithPath: absolute).standardizedFileURL.path, package: pkg, release: rel, bytes: bytes))
        }
        guard unreadable.isEmpty else {
            return .failure(Refusal(message: (lines + ["Could not open: \(unreadable.joined(separator: " "))"]).joined(separator: "\n")))
        }
        return .success(out)
    }

    /// The kernels dnf installed from files: (nvra, release), in install order.
    static func fileKernels(_ hp: HostPaths) -> [(nvra: String, release: String)] {
        (readFile(hp.dnfLog) ?? "").split(separator: "\n").compactMap { line in
            let w = line.split(separator: " ")
            return w.count >= 3 && w[0] == "install" ? (String(w[1]), String(w[2])) : nil
        }
    }

    // MARK: rpm

    /// `rpm -q NAME...`: `kernel` lists every kernel installed from the repository,
    /// `kernel-<release>` one; a package dnf installed from a file answers to its name, its
    /// name-version, name-version-release or its full NVRA. `rpm -qp FILE...` (`-l`: the file
    /// list) reads package files.
    static func rpm(hp: HostPaths, args: [String], _ o: inout Out) -> Int32 {
        var query = false, package = false, list = false
        var names: [String] = []
        for a in args {
            switch a {
            case "--query": query = true
            case "--package": package = true
            case "--list": list = true
            default:
                if a.hasPrefix("-"), !a.hasPrefix("--"), a.count > 1, a.dropFirst().allSatisfy({ "qpl".contains($0) }) {
                    query = query || a.contains("q"); package = package || a.contains("p"); list = list || a.contains("l")
                } else if a.hasPrefix("-") {
                    o.err("fleetsim: rpm \(args.joined(separator: " ")) is not simulated (only rpm -q, -qp, -qlp)")
                    return 1
                } else {
                    names.append(a)
                }
            }
        }
        guard query, list ? package : true else {
            o.err("fleetsim: rpm \(args.joined(separator: " ")) is not simulated (only rpm -q, -qp, -qlp)")
            return 1
        }
        guard !names.isEmpty else {
            o.err("rpm: no arguments given for query")
            return 1
        }
        var status: Int32 = 0
        if package {
            for f in names {
                guard fileExists(f) else {
                    o.err("error: open of \(f) failed: No such file or directory")
                    status = 1
                    continue
                }
                guard let pkg = try? RPMFile.read(path: f) else {
                    o.err("error: \(f): not an rpm package (or package manifest)")
                    status = 1
                    continue
                }
                if list { for path in pkg.files { o.out(path) } } else { o.out(pkg.nvra) }
            }
            return status
        }
        let fromFiles = fileKernels(hp)
        let installed = BLS.installedKernels(bootDir: hp.boot).filter { rel in !fromFiles.contains { $0.release == rel } }
        for name in names {
            // A file's package: NAME-VERSION-RELEASE.ARCH, neither version nor release with a `-`.
            let matches = fromFiles.map(\.nvra).filter { nvra in
                var forms = [nvra]
                if let dot = nvra.lastIndex(of: ".") {
                    let nvr = nvra[..<dot]
                    forms.append(String(nvr))
                    if let d1 = nvr.lastIndex(of: "-") {
                        let nv = nvr[..<d1]
                        forms.append(String(nv))
                        if let d2 = nv.lastIndex(of: "-") { forms.append(String(nv[..<d2])) }
                    }
                }
                return forms.contains(name)
            }
            var found = !matches.isEmpty
            if name == "kernel" || name == "kernel-core" {
                for rel in installed { o.out("\(name)-\(rel).x86_64") }
                found = found || !installed.isEmpty
            } else if name.hasPrefix("kernel-"), let rel = installed.first(where: { name == "kernel-\($0)" || name == "kernel-\($0).x86_64" }) {
                o.out("kernel-\(rel).x86_64")
                found = true
            }
            for m in matches { o.out(m) }
            if !found {
                o.out("package \(name) is not installed")
                status = 1
            }
        }
        return status
    }

    // MARK: grubby

    /// RHEL 9's grubby (the grubby-bls script): entries are the BLS files, newest first; the
    /// default is grubenv's `saved_entry`; `/boot` is a mount point, so paths are shown with it.
    static func grubby(hp: HostPaths, args: [String], _ o: inout Out) throws -> Int32 {
        let withArgument: Set<String> = ["add-kernel", "args", "config-file", "env", "info", "initrd", "extra-initrd", "remove-args",
                                         "remove-kernel", "set-default", "set-default-index", "title", "update-kernel", "bls-directory"]
        let flags: Set<String> = ["help", "bad-image-okay", "copy-default", "default-kernel", "default-index", "default-title", "grub2", "make-default", "zipl"]
        let short: [Character: String] = ["c": "config-file", "i": "extra-initrd", "b": "bls-directory"]
        var opts: [(String, String?)] = []
        var i = 0
        guard !args.isEmpty else {
            o.err("no action specified")
            return 1
        }
        while i < args.count {
            let a = args[i]
            i += 1
            var name: String
            var value: String?
            if a.hasPrefix("--") {
                let body = a.dropFirst(2)
                if let eq = body.firstIndex(of: "=") { name = String(body[..<eq]); value = String(body[body.index(after: eq)...]) } else { name = String(body) }
            } else if a.hasPrefix("-"), a.count >= 2, let s = short[a[a.index(after: a.startIndex)]] {
                name = s
                if a.count > 2 { value = String(a.dropFirst(2)) }
            } else if a == "-?" || a == "-h" {
                name = "help"
            } else {
                continue   // getopt moves operands after `--`; grubby ignores them
            }
            if withArgument.contains(name) {
                if value == nil {
                    guard i < args.count else {
                        o.err("grubby: option '--\(name)' requires an argument")
                        return 1
                    }
                    value = args[i]
                    i += 1
                }
            } else if !flags.contains(name) {
                o.err("grubby: unrecognized option '\(a)'")
                return 1
            } else if value != nil {
                o.err("grubby: option '--\(name)' doesn't allow an argument")
                return 1
            }
            opts.append((name, value))
        }
        func opt(_ n: String) -> String? { opts.last { $0.0 == n }?.1 }
        func has(_ n: String) -> Bool { opts.contains { $0.0 == n } }
        if has("help") {
            o.out("Usage: grubby [OPTION...]")
            o.out("      --default-kernel                    display the path of the default kernel")
            o.out("      --default-index                     display the index of the default kernel")
            o.out("      --default-title                     display the title of the default kernel")
            o.out("      --info=kernel-path                  display boot information for specified kernel")
            o.out("      --set-default=kernel-path           make the first entry referencing the specified kernel the default")
            o.out("      --set-default-index=entry-index     make the given entry index the default entry")
            return 0
        }
        for n in ["add-kernel", "remove-kernel", "update-kernel", "args", "remove-args", "bls-directory", "zipl"] where has(n) {
            o.err("fleetsim: grubby --\(n) is not simulated")
            return 1
        }
        let env = opt("env").map { hostPath($0, hp) } ?? hp.grub2Env
        let entries = BLS.entries(bootDir: hp.boot)
        let prefix = "/boot"
        let grubenv = Grub.readEnv(env)
        // get_default_index: an empty saved_entry is entry 0; a number is an index; otherwise the
        // entry with that id or title; nothing when none has it (bash then reads index 0 below).
        let saved = Grub.envValue(grubenv, "saved_entry") ?? ""
        var defaultIndex: Int?
        if saved.isEmpty { defaultIndex = entries.isEmpty ? nil : 0 }
        else if saved.allSatisfy({ $0.isASCII && $0.isNumber }) { defaultIndex = Int(saved).flatMap { $0 < entries.count ? $0 : nil } }
        else { defaultIndex = entries.firstIndex { $0.id == saved || $0.title == saved } }

        // param_to_indexes: ALL, DEFAULT, a kernel path (with or without /boot), TITLE=..., an index.
        func indexes(_ param: String) -> [Int]? {
            if param == "ALL" { return Array(entries.indices) }
            if param == "DEFAULT" { return defaultIndex.map { [$0] } ?? [] }
            let base = "/" + (param.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? param)
            let found = entries.indices.filter { i in
                param == entries[i].linux || base == entries[i].linux || param == "TITLE=\(entries[i].title)" || param == String(i)
            }
            return found.isEmpty ? nil : found
        }

        if has("default-kernel") || has("default-index") || has("default-title") {
            let shown = defaultIndex ?? 0
            let e = shown < entries.count ? entries[shown] : nil
            switch opts.last(where: { $0.0.hasPrefix("default-") })?.0 {
            case "default-kernel": o.out(prefix + (e?.linux ?? ""))
            case "default-index": o.out(defaultIndex.map(String.init) ?? "")
            default: o.out(e?.title ?? "")
            }
            return 0
        }
        if let param = opt("info") {
            guard let list = indexes(param) else {
                o.err("The param \(param) is incorrect")
                return 1
            }
            for i in list {
                let e = entries[i]
                // get_bls_args: $variables from grubenv when set there, whitespace collapsed.
                var words = e.options.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
                for (w, word) in words.enumerated() where word.hasPrefix("$") {
                    if let v = Grub.envValue(grubenv, String(word.dropFirst())), !v.isEmpty { words[w] = v }
                }
                var root: String?
                if let r = words.firstIndex(where: { $0.hasPrefix("root=") }) {
                    root = String(words[r].dropFirst("root=".count))
                    words.remove(at: r)
                }
                o.out("index=\(i)")
                o.out("kernel=\"\(prefix)\(e.linux)\"")
                o.out("args=\"\(words.joined(separator: " "))\"")
                if let root { o.out("root=\"\(root)\"") }
                o.out("initrd=\"\(prefix)\(e.initrd)\"")
                o.out("title=\"\(e.title)\"")
                o.out("id=\"\(e.id)\"")
            }
            return 0
        }
        if let param = opt("set-default") ?? opt("set-default-index") {
            guard let i = indexes(param)?.first else {
                o.err("The param \(param) is incorrect")
                return 1
            }
            try Grub.setEnv(env, "saved_entry", entries[i].id)
            o.err("The default is \(entries[i].path) with index \(i) and kernel \(prefix)\(entries[i].linux)")
            return 0
        }
        return 0
    }
}
