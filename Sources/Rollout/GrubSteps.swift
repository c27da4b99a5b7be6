import Foundation
import SSH

/// The GRUB side of a rollout, as shell commands for a Debian host with
/// `GRUB_DEFAULT=saved`: find a release's menu entry, boot it once, make it
/// the default, restore the previous one. Every value is shell-quoted.
public enum GrubSteps {
    public static let readConfig = "cat /boot/grub/grub.cfg"
    public static func bootOnce(_ entry: String) -> String { "grub-reboot \(shellQuote(entry))" }
    public static func setDefault(_ entry: String) -> String { "grub-set-default \(shellQuote(entry))" }
    public static let clearOneShot = "grub-editenv /boot/grub/grubenv unset next_entry"

    /// The `>`-separated title path of the (non-recovery) entry that boots `release`,
    /// as `grub-reboot` accepts it, e.g.
    /// `Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-19-hosting`.
    public static func entryPath(forRelease release: String, in cfg: String) -> String? {
        GrubMenu.parse(cfg).entry(forRelease: release)?.titlePath
    }
}
