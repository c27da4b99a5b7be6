import Foundation
import Yams
import Basics

// The `kernel` and `bootloader` sections.

extension PlanLoader {
    static let kernelKeys = ["release", "install", "min_boot_free", "packages", "upload_parallel", "upload_bandwidth"]
    /// At most this many files in `kernel.packages`.
    static let maxPackages = 64
    static let bootloaderKeys = ["type", "stage", "commit", "rollback"]
    static let bootloaderTypes = ["auto", "grub", "grub-bls", "systemd-boot", "custom"]
}

extension PlanParser {
    func parseKernel(_ node: Node) -> KernelSpec? {
        guard let pairs = r.mapping(node, "kernel", allowed: PlanLoader.kernelKeys) else { return nil }
        var release: String?
        var spec = KernelSpec(release: "")
        for (k, _, v) in pairs {
            switch k {
            case "release":
                if let s = r.string(v, "kernel.release") {
                    if Self.isValidRelease(s) { release = s } else {
                        r.error(v, "kernel.release '\(Inventory.printable(s))' is not a kernel release as /proc/sys/kernel/osrelease shows it",
                                hint: "letters, digits, '.', '-', '_', '+', e.g. 6.1.0-19-hosting")
                    }
                }
            case "install":
                if let list = commands(v, "kernel.install", placeholders: ["release"]) { spec.install = list; spec.installGiven = true }
            case "min_boot_free":
                if let b = size(v, "kernel.min_boot_free") { spec.minBootFreeBytes = b }
            case "packages":
                if let list = packages(v) { spec.packages = list }
            case "upload_parallel":
                if let n = int(v, "kernel.upload_parallel", range: 1...1000) { spec.uploadParallel = n }
            case "upload_bandwidth":
                if let b = bandwidth(v, "kernel.upload_bandwidth") { spec.uploadBandwidth = b }
            default: break
            }
        }
        // Packages replace the install commands: rollctl installs what it shipped, so a second way
        // to install (which might fetch another build of the same release) is refused, not guessed at.
        if let installKey = pairs.first(where: { $0.key == "install" })?.keyNode, pairs.contains(where: { $0.key == "packages" }) {
            r.error(installKey, "kernel.install and kernel.packages exclude each other: the shipped packages are installed with dpkg -i (.deb) or dnf install (.rpm)",
                    hint: "remove kernel.install; commands that must run before the install belong in hooks, or in a package's own scripts")
        }
        for key in ["upload_parallel", "upload_bandwidth"] {
            if let keyNode = pairs.first(where: { $0.key == key })?.keyNode, !pairs.contains(where: { $0.key == "packages" }) {
                r.error(keyNode, "kernel.\(key) is only for kernel.packages (nothing is uploaded without them)", hint: "remove it, or add kernel.packages")
            }
        }
        if !pairs.contains(where: { $0.key == "release" }) {
            r.error(node, "kernel needs a 'release' (the target, as /proc/sys/kernel/osrelease shows it)", hint: "add release: 6.1.0-19-hosting")
        }
        guard let release else { return nil }
        spec.release = release
        return spec
    }

    /// `kernel.packages`: a list of `.deb` or `.rpm` files (not both kinds), relative to the plan's folder.
    func packages(_ node: Node) -> [KernelPackage]? {
        guard case .sequence(let seq) = node else {
            r.error(node, "kernel.packages must be a list of package files, found \(r.kind(node))",
                    hint: "write packages: [./linux-image-6.1.0-19-hosting_amd64.deb]")
            return nil
        }
        if seq.isEmpty {
            r.error(node, "kernel.packages is an empty list", hint: "name at least one .deb or .rpm file, or remove the key to install with kernel.install")
            return nil
        }
        if seq.count > PlanLoader.maxPackages {
            r.error(node, "kernel.packages lists \(seq.count) files; at most \(PlanLoader.maxPackages)")
            return nil
        }
        var out: [KernelPackage] = []
        var ok = true
        var names: [String: Node] = [:]
        for item in seq {
            guard let raw = r.string(item, "each entry of kernel.packages") else { ok = false; continue }
            guard let p = package(item, raw) else { ok = false; continue }
            if names[p.name] != nil {
                r.error(item, "kernel.packages names two files called \(Inventory.printable(p.name)); they would overwrite each other on the host",
                        hint: "rename one of them")
                ok = false
                continue
            }
            names[p.name] = item
            out.append(p)
        }
        guard ok else { return nil }
        if let first = out.first, let other = out.first(where: { $0.kind != first.kind }), let at = names[other.name] {
            r.error(at, "kernel.packages mixes .\(first.kind.rawValue) and .\(other.kind.rawValue) files; a host installs one kind",
                    hint: "ship .deb files to Debian/Ubuntu hosts and .rpm files to RHEL/Fedora hosts, in separate plans")
            return nil
        }
        return out
    }

    /// One package file: it exists, is a regular readable file, and is what its name says.
    func package(_ node: Node, _ raw: String) -> KernelPackage? {
        let shown = Inventory.printable(raw)
        if raw.trimmed.isEmpty { r.error(node, "an entry of kernel.packages is empty"); return nil }
        let path = resolve(raw)
        let name = (path as NSString).lastPathComponent
        let lower = name.lowercased()
        let kind: KernelPackage.Kind
        if lower.hasSuffix(".deb") { kind = .deb } else if lower.hasSuffix(".rpm") { kind = .rpm } else {
            r.error(node, "kernel.packages: \(shown) is not a .deb or .rpm file", hint: "ship the kernel's package files, e.g. linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb")
            return nil
        }
        // The name is used on the host (shell-quoted, but a person reads it in logs and `ls`).
        if name.count > 200 || name.hasPrefix("-") || name.hasPrefix(".")
            || name.contains(where: { !$0.isASCII || $0.isWhitespace || ($0.asciiValue ?? 0) < 32 || $0.asciiValue == 127 || "'\"\\`$;&|<>*?!".contains($0) }) {
            r.error(node, "kernel.packages: the file name \(Inventory.printable(name)) has characters a package file name should not have",
                    hint: "rename it to letters, digits and . _ + ~ - only (the way dpkg and rpm name packages)")
            return nil
        }
        guard checkFiles else { return KernelPackage(path: path, name: name, kind: kind, size: 0) }
        var st = stat()
        guard stat(path, &st) == 0 else {
            let why = String(cString: strerror(errno))
            r.error(node, "kernel.packages: \(shown) (\(path)) cannot be found: \(why)",
                    hint: "paths are relative to the plan's folder \((self.path as NSString).deletingLastPathComponent.isEmpty ? "." : (self.path as NSString).deletingLastPathComponent)")
            return nil
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            r.error(node, "kernel.packages: \(shown) is not a regular file")
            return nil
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            r.error(node, "kernel.packages: \(shown) cannot be read: \(String(cString: strerror(errno)))", hint: "check its permissions")
            return nil
        }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 8)
        let n = read(fd, &head, 8)
        let isDeb = n == 8 && head == Array("!<arch>\n".utf8)
        let isRPM = n >= 4 && head.prefix(4) == [0xED, 0xAB, 0xEE, 0xDB]
        if (kind == .deb && !isDeb) || (kind == .rpm && !isRPM) {
            r.error(node, "kernel.packages: \(shown) is named .\(kind.rawValue) but is not a \(kind == .deb ? "Debian package (an ar archive)" : "RPM package")\(n <= 0 ? " (it is empty)" : "")",
                    hint: "check the file: `\(kind == .deb ? "dpkg-deb --info" : "rpm -qip") \(shellQuote(path))`")
            return nil
        }
        return KernelPackage(path: path, name: name, kind: kind, size: UInt64(st.st_size))
    }

    /// Bytes per second: `50MiB/s`, `50MiB` (per second), at least 64 KiB/s.
    func bandwidth(_ node: Node, _ what: String) -> UInt64? {
        if case let .scalar(s) = node {
            var t = s.string.trimmed
            for suffix in ["/s", "/sec", "/second"] where t.hasSuffix(suffix) { t = String(t.dropLast(suffix.count)) }
            if !t.hasPrefix("-"), let b = Quantity.bytes(t) {
                if b >= 64 << 10 { return b }
                r.error(node, "\(what) of \(s.string) is too low: at least 64KiB/s", hint: "write e.g. 50MiB/s, or remove it for no cap")
                return nil
            }
        }
        r.error(node, "\(what) must be a rate like 50MiB/s, found \(r.kind(node))")
        return nil
    }

    static func isValidRelease(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 128 && s.first!.isASCII && (s.first!.isNumber || s.first!.isLetter)
            && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-+~".contains($0)) }
    }

    func parseBootloader(_ node: Node) -> Bootloader? {
        // `bootloader: grub` is a short form of `{type: grub}`.
        if case let .scalar(s) = node {
            switch s.string {
            case "auto": return .auto
            case "grub": return .grub
            case "grub-bls": return .grubBLS
            case "systemd-boot": return .systemdBoot
            case "custom":
                r.error(node, "bootloader 'custom' needs its commands", hint: "write bootloader: {type: custom, stage: [...], commit: [...], rollback: [...]}")
                return nil
            default:
                r.error(node, "bootloader must be auto, grub, grub-bls, systemd-boot or custom, found '\(Inventory.printable(s.string))'",
                        hint: nearest(s.string, in: PlanLoader.bootloaderTypes).map { "did you mean '\($0)'?" })
                return nil
            }
        }
        guard let pairs = r.mapping(node, "bootloader", allowed: PlanLoader.bootloaderKeys) else { return nil }
        var type = "auto"
        var stage: [String]?, commit: [String]?, rollback: [String]?
        for (k, _, v) in pairs {
            switch k {
            case "type":
                if let t = r.string(v, "bootloader.type") {
                    if PlanLoader.bootloaderTypes.contains(t) { type = t } else {
                        r.error(v, "bootloader.type must be auto, grub, grub-bls, systemd-boot or custom, found '\(Inventory.printable(t))'",
                                hint: nearest(t, in: PlanLoader.bootloaderTypes).map { "did you mean '\($0)'?" })
                        return nil
                    }
                }
            case "stage": stage = commands(v, "bootloader.stage", placeholders: ["release"])
            case "commit": commit = commands(v, "bootloader.commit", placeholders: ["release"])
            case "rollback": rollback = commands(v, "bootloader.rollback", placeholders: ["release", "previous_release"])
            default: break
            }
        }
        switch type {
        case "custom":
            var ok = true
            for (key, list) in [("stage", stage), ("commit", commit), ("rollback", rollback)] where list == nil {
                if !pairs.contains(where: { $0.key == key }) {
                    r.error(node, "a custom bootloader needs '\(key)' commands",
                            hint: "stage boots {release} once, commit makes it the default, rollback restores {previous_release}")
                }
                ok = false
            }
            guard ok, let stage, let commit, let rollback else { return nil }
            return .custom(stage: stage, commit: commit, rollback: rollback)
        default:
            for (k, keyNode, _) in pairs where k != "type" {
                r.error(keyNode, "bootloader.\(k) is only for type: custom (\(type) commands are built in)", hint: "remove it, or set type: custom")
            }
            switch type {
            case "grub": return .grub
            case "grub-bls": return .grubBLS
            case "systemd-boot": return .systemdBoot
            default: return .auto
            }
        }
    }
}
