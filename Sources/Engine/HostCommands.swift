import Foundation
import Basics
import Configuration

/// The shell commands a rollout runs on a host, step by step, rendered from the
/// plan with every substituted value shell-quoted. The dry-run shows exactly
/// these; the orchestrator runs exactly these.
public enum HostCommands {
    /// Reads the GRUB menu to find the release's entry (read-only).
    public static let readGrubConfig = "cat /boot/grub/grub.cfg"
    /// Free bytes on /boot (read-only).
    public static let bootFree = "df -B1 --output=avail /boot | tail -n 1"
    /// Boot id and release after the reboot (read-only).
    /// Forget a staged one-shot boot (before a rollback reboot).
    public static let clearOneShot = "grub-editenv /boot/grub/grubenv unset next_entry"
    public static let verify = "cat /proc/sys/kernel/random/boot_id /proc/sys/kernel/osrelease"

    /// `{release}` and `{previous_release}` replaced, shell-quoted.
    public static func substitute(_ command: String, release: String, previousRelease: String?) -> String {
        var s = command.replacingOccurrences(of: "{release}", with: shellQuote(release))
        if let p = previousRelease { s = s.replacingOccurrences(of: "{previous_release}", with: shellQuote(p)) }
        return s
    }

    public static func install(_ plan: Plan) -> [String] {
        plan.kernel.install.map { substitute($0, release: plan.kernel.release, previousRelease: nil) }
    }

    /// Boot the new kernel once. GRUB: `grub-reboot` with the entry's title path
    /// (found in grub.cfg after the install; see `GrubMenu`).
    /// GRUB: the running kernel is pinned as the saved default first (`previousEntryPath`), so a
    /// newly installed kernel listed first never becomes the default by accident and a kernel
    /// that fails to boot falls back to it.
    public static func stage(_ plan: Plan, entryPath: String, previousEntryPath: String? = nil) -> [String] {
        switch plan.bootloader {
        case .grub: (previousEntryPath.map { ["grub-set-default " + shellQuote($0)] } ?? []) + ["grub-reboot " + shellQuote(entryPath)]
        case .custom(let stage, _, _): stage.map { substitute($0, release: plan.kernel.release, previousRelease: nil) }
        }
    }

    /// Make the new kernel the default (after the wave's gate passed).
    public static func commit(_ plan: Plan, entryPath: String) -> [String] {
        switch plan.bootloader {
        case .grub: ["grub-set-default " + shellQuote(entryPath)]
        case .custom(_, let commit, _): commit.map { substitute($0, release: plan.kernel.release, previousRelease: nil) }
        }
    }

    /// Restore the previous default, then reboot into it.
    public static func rollback(_ plan: Plan, previousRelease: String, previousEntryPath: String) -> [String] {
        restoreDefault(plan, previousRelease: previousRelease, previousEntryPath: previousEntryPath) + [plan.reboot.command]
    }

    /// Make the previous kernel the default again (no reboot; the orchestrator reboots
    /// only a host that runs something else).
    public static func restoreDefault(_ plan: Plan, previousRelease: String, previousEntryPath: String?) -> [String] {
        switch plan.bootloader {
        case .grub: previousEntryPath.map { ["grub-set-default " + shellQuote($0)] } ?? []
        case .custom(_, _, let rollback):
            rollback.map { substitute($0, release: plan.kernel.release, previousRelease: previousRelease) }
        }
    }
}

