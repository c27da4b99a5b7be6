import Yams
import Basics

// The `kernel` and `bootloader` sections.

extension PlanLoader {
    static let kernelKeys = ["release", "install", "min_boot_free"]
    static let bootloaderKeys = ["type", "stage", "commit", "rollback"]
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
                if let list = commands(v, "kernel.install", placeholders: ["release"]) { spec.install = list }
            case "min_boot_free":
                if let b = size(v, "kernel.min_boot_free") { spec.minBootFreeBytes = b }
            default: break
            }
        }
        if !pairs.contains(where: { $0.key == "release" }) {
            r.error(node, "kernel needs a 'release' (the target, as /proc/sys/kernel/osrelease shows it)", hint: "add release: 6.1.0-19-hosting")
        }
        guard let release else { return nil }
        spec.release = release
        return spec
    }

    static func isValidRelease(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 128 && s.first!.isASCII && (s.first!.isNumber || s.first!.isLetter)
            && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-+~".contains($0)) }
    }

    func parseBootloader(_ node: Node) -> Bootloader? {
        // `bootloader: grub` is a short form of `{type: grub}`.
        if case let .scalar(s) = node {
            switch s.string {
            case "grub": return .grub
            case "systemd-boot": return .systemdBoot
            case "custom":
                r.error(node, "bootloader 'custom' needs its commands", hint: "write bootloader: {type: custom, stage: [...], commit: [...], rollback: [...]}")
                return nil
            default:
                r.error(node, "bootloader must be grub, systemd-boot or custom, found '\(Inventory.printable(s.string))'",
                        hint: nearest(s.string, in: ["grub", "systemd-boot", "custom"]).map { "did you mean '\($0)'?" })
                return nil
            }
        }
        guard let pairs = r.mapping(node, "bootloader", allowed: PlanLoader.bootloaderKeys) else { return nil }
        var type = "grub"
        var stage: [String]?, commit: [String]?, rollback: [String]?
        for (k, _, v) in pairs {
            switch k {
            case "type":
                if let t = r.string(v, "bootloader.type") {
                    if ["grub", "systemd-boot", "custom"].contains(t) { type = t } else {
                        r.error(v, "bootloader.type must be grub, systemd-boot or custom, found '\(Inventory.printable(t))'",
                                hint: nearest(t, in: ["grub", "systemd-boot", "custom"]).map { "did you mean '\($0)'?" })
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
            return type == "grub" ? .grub : .systemdBoot
        }
    }
}
