import Foundation
import Basics
import RolloutConfig

/// The shell commands a rollout runs on a host besides the bootloader's (see
/// `BootloaderDriver`), rendered from the plan with every substituted value
/// shell-quoted. The dry-run shows exactly these; the orchestrator runs exactly these.
public enum HostCommands {
    /// Free bytes on /boot (read-only).
    public static let bootFree = "df -B1 --output=avail /boot | tail -n 1"
    /// Boot id and release after the reboot (read-only).
    public static let verify = "cat /proc/sys/kernel/random/boot_id /proc/sys/kernel/osrelease"

    /// `{release}` and `{previous_release}` replaced, shell-quoted.
    public static func substitute(_ command: String, release: String, previousRelease: String?) -> String {
        var s = command.replacingOccurrences(of: "{release}", with: shellQuote(release))
        if let p = previousRelease { s = s.replacingOccurrences(of: "{previous_release}", with: shellQuote(p)) }
        return s
    }

    /// The install commands on a host whose driver is `bootloader`: the plan's, or with
    /// `bootloader: auto` and no `kernel.install`, the driver's default (apt, or dnf for grub-bls).
    public static func install(_ plan: Plan, bootloader: any BootloaderDriver) -> [String] {
        let commands = plan.bootloader == .auto && !plan.kernel.installGiven ? bootloader.defaultInstall : plan.kernel.install
        return commands.map { substitute($0, release: plan.kernel.release, previousRelease: nil) }
    }
}
