import Basics
import RolloutConfig
import RolloutJournal

/// What the engine asks of a bootloader: boot a release once, make it the default after
/// the gate, and go back to the previous kernel. A driver renders shell commands (every
/// substituted value shell-quoted) and reads boot entries from command output; it runs
/// nothing itself, so the orchestrator runs exactly what the dry-run shows.
///
/// To add a bootloader: a case in `Bootloader` (Configuration, with its plan syntax in
/// `PlanLoader`), a driver here, its lines in `BootloaderDrivers.driver(for:)` and
/// `builtIn(named:)`, and (for `bootloader: auto`) its rule in `BootloaderDetection`.
///
/// A rollout's hosts may have different drivers (`bootloader: auto`): each host's is journaled
/// when the rollout is created (`host.bootloader`), and every step asks `Orchestrator.bootloader(_:)`.
public protocol BootloaderDriver: Sendable {
    /// `grub`, `grub-bls`, `systemd-boot`, `custom`: what the dry-run and `rollout show` say.
    var name: String { get }
    /// The read-only command that lists boot entries, nil when the driver addresses
    /// kernels by release alone. When set, `entry(in:release:)` finds a release's entry
    /// in its output; the running kernel's entry is journaled at check (what rollback
    /// boots), the new kernel's after the install (what stage and commit use).
    var entryListing: String? { get }
    /// Where `entryListing` reads from, for messages (`/boot/grub/grub.cfg`).
    var entrySource: String { get }
    func entry(in listing: String, release: String) -> String?
    /// The entry of a release the host has not installed yet, as the dry-run guesses it
    /// (`like`: a release whose entry the listing has, to copy its submenu path).
    func expectedEntry(in listing: String?, release: String, like: String?) -> String?
    /// Boot `entry` (of `plan.kernel.release`) once; `previous` stays the default, so a
    /// kernel that fails to boot falls back to it.
    func stage(_ plan: Plan, entry: String?, previous: String?) -> [String]
    /// Make the new kernel the default (after the wave's gate passed).
    func commit(_ plan: Plan, entry: String?) -> [String]
    /// Before a rollback: forget a staged one-shot boot (best effort, may fail harmlessly).
    var clearOneShot: [String] { get }
    /// Make the previous kernel the default again (no reboot).
    func restoreDefault(_ plan: Plan, previousRelease: String, previousEntry: String?) -> [String]
    /// What the dry-run should warn about.
    var notes: [String] { get }
    /// The dry-run's words for the stage step.
    func stageDescription(release: String) -> String
    /// What installs the kernel on this bootloader's hosts when the plan says `bootloader: auto`
    /// and no `kernel.install` (apt on Debian's GRUB, dnf on RHEL's).
    var defaultInstall: [String] { get }
    /// A read-only command the check step runs on the host (nil: none), and what its output
    /// says: an error fails the host's check, before anything on it changes.
    var preflight: String? { get }
    func preflightFindings(_ output: String) -> [BootloaderFinding]
    /// The dry-run's words for what `preflight` checks.
    var preflightDescription: String? { get }
}

extension BootloaderDriver {
    public var entrySource: String { "the boot menu" }
    public func expectedEntry(in listing: String?, release: String, like: String?) -> String? {
        listing.flatMap { entry(in: $0, release: release) }
    }
    public var notes: [String] { [] }
    public func stageDescription(release: String) -> String { "boot \(release) once" }
    public var defaultInstall: [String] { KernelSpec.aptInstall }
    public var preflight: String? { nil }
    public func preflightFindings(_ output: String) -> [BootloaderFinding] { [] }
    public var preflightDescription: String? { nil }
}

public enum BootloaderDrivers {
    /// The plan's driver. `auto` has none of its own (each host's is detected and journaled):
    /// here it gives grub, what a plan without a `bootloader` key meant before rollctl detected
    /// bootloaders — the driver of hosts a rollout journaled then (`driver(journaled:plan:)`).
    public static func driver(for bootloader: Bootloader) -> any BootloaderDriver {
        switch bootloader {
        case .auto, .grub: GrubDriver()
        case .grubBLS: GrubBLSDriver()
        case .systemdBoot: SystemdBootDriver()
        case let .custom(stage, commit, rollback): CustomBootloader(stageCommands: stage, commitCommands: commit, rollbackCommands: rollback)
        }
    }

    /// A built-in driver by its `name` (`grub`, `grub-bls`, `systemd-boot`); nil for any other.
    public static func builtIn(named name: String) -> (any BootloaderDriver)? {
        switch name {
        case "grub": GrubDriver()
        case "grub-bls": GrubBLSDriver()
        case "systemd-boot": SystemdBootDriver()
        default: nil
        }
    }

    /// The driver journaled for a host (`host.bootloader`), or the plan's when none was (hosts
    /// journaled before the column existed). A name this rollctl does not know, or `custom` with a
    /// plan that has no custom commands, is a `JournalError`, never a guess.
    public static func driver(journaled name: String?, plan: Bootloader) throws -> any BootloaderDriver {
        guard let name else { return driver(for: plan) }
        if let d = builtIn(named: name) { return d }
        if name == "custom", case .custom = plan { return driver(for: plan) }
        throw JournalError("the journal names bootloader '\(name.prefix(40))', which this rollctl does not know for this plan")
    }
}

/// Debian's and Ubuntu's GRUB: the release's menu entry is found in `grub.cfg` (see `GrubMenu`)
/// and addressed by its title path (`Advanced options for Ubuntu>Ubuntu, with Linux R` on
/// Ubuntu); `grub-reboot` boots it once, `grub-set-default` saves it (needs `GRUB_DEFAULT=saved`).
public struct GrubDriver: BootloaderDriver {
    public init() {}
    public var name: String { "grub" }
    /// Reads the GRUB menu (read-only).
    public static let readConfig = "cat /boot/grub/grub.cfg"
    /// Forgets a staged one-shot boot.
    public static let clearNextEntry = "grub-editenv /boot/grub/grubenv unset next_entry"
    public var entryListing: String? { Self.readConfig }
    public var entrySource: String { "/boot/grub/grub.cfg" }
    public func entry(in listing: String, release: String) -> String? {
        GrubMenu.parse(listing).entry(forRelease: release)?.titlePath
    }
    public func expectedEntry(in listing: String?, release: String, like: String?) -> String? {
        listing.flatMap { GrubMenu.parse($0).expectedTitlePath(forRelease: release, like: like) } ?? GrubMenu.debianTitlePath(release)
    }
    /// The running kernel is pinned as the saved default first, so a newly installed kernel
    /// listed first never becomes the default by accident.
    public func stage(_ plan: Plan, entry: String?, previous: String?) -> [String] {
        (previous.map { ["grub-set-default " + shellQuote($0)] } ?? []) + ["grub-reboot " + shellQuote(entry ?? "")]
    }
    public func commit(_ plan: Plan, entry: String?) -> [String] { ["grub-set-default " + shellQuote(entry ?? "")] }
    public var clearOneShot: [String] { [Self.clearNextEntry] }
    public func stageDescription(release: String) -> String {
        "find the entry of \(release) in grub.cfg and boot it once (GRUB_DEFAULT=saved: a kernel that fails to boot falls back to the current default)"
    }
    public func restoreDefault(_ plan: Plan, previousRelease: String, previousEntry: String?) -> [String] {
        previousEntry.map { ["grub-set-default " + shellQuote($0)] } ?? []
    }
    /// GRUB_DEFAULT=saved, /boot/grub where GRUB can write grubenv, Ubuntu's recordfail (`GrubSafety`).
    public var preflight: String? { GrubSafety.command }
    public func preflightFindings(_ output: String) -> [BootloaderFinding] {
        GrubSafety.parse(output)?.findings ?? [.init(.error, "the GRUB checks (GRUB_DEFAULT, grub-probe, grubenv) printed nothing readable: boot-once cannot be shown to be safe")]
    }
    public var preflightDescription: String? {
        "GRUB_DEFAULT=saved in /etc/default/grub (else fail), /boot/grub not on LVM, RAID, LUKS, btrfs or zfs (grub-probe: GRUB must write grubenv at boot; else fail), no recordfail=1 left in grubenv (a warning; a failure with GRUB_RECORDFAIL_TIMEOUT=-1)"
    }
}

/// GRUB with Boot Loader Specification entries (RHEL 8-10, Alma, Rocky, Fedora): a kernel's
/// entry is `/boot/loader/entries/<machine-id>-<release>.conf`, found by `grubby --info=ALL`
/// and named by its id; `grub2-reboot` boots it once, `grubby --set-default` saves it.
///
/// kernel-install makes every newly installed kernel the saved default when
/// `/etc/sysconfig/kernel` says `UPDATEDEFAULT=yes` (RHEL's default): the stage step therefore
/// sets the running kernel's entry back as the saved default right after the install and
/// before the one-shot boot, so a kernel that fails to boot falls back to the old one.
public struct GrubBLSDriver: BootloaderDriver {
    public init() {}
    public var name: String { "grub-bls" }
    /// Lists the BLS entries (read-only).
    public static let listEntries = "grubby --info=ALL"
    /// Forgets a staged one-shot boot (`-`: the default grubenv, /boot/grub2/grubenv).
    public static let clearNextEntry = "grub2-editenv - unset next_entry"
    public var entryListing: String? { Self.listEntries }
    public var entrySource: String { "the BLS entries (grubby --info=ALL)" }
    public func entry(in listing: String, release: String) -> String? {
        GrubbyInfo.parse(listing).entryID(forRelease: release)
    }
    public func expectedEntry(in listing: String?, release: String, like: String?) -> String? {
        listing.flatMap { GrubbyInfo.parse($0).expectedEntryID(forRelease: release, like: like) } ?? "<machine-id>-\(release)"
    }
    static func setDefault(_ release: String) -> String { "grubby --set-default " + shellQuote("/boot/vmlinuz-" + release) }
    public func stage(_ plan: Plan, entry: String?, previous: String?) -> [String] {
        (previous.map { ["grub2-set-default " + shellQuote($0)] } ?? []) + ["grub2-reboot " + shellQuote(entry ?? "")]
    }
    public func commit(_ plan: Plan, entry: String?) -> [String] { [Self.setDefault(plan.kernel.release)] }
    public var clearOneShot: [String] { [Self.clearNextEntry] }
    public func restoreDefault(_ plan: Plan, previousRelease: String, previousEntry: String?) -> [String] {
        [Self.setDefault(previousRelease)]
    }
    public var defaultInstall: [String] { KernelSpec.dnfInstall }
    /// The same checks as Debian's GRUB, on RHEL's layout (`GrubSafety`: /boot/grub2, grub2-probe).
    public var preflight: String? { GrubSafety.command }
    public func preflightFindings(_ output: String) -> [BootloaderFinding] { GrubDriver().preflightFindings(output) }
    public var preflightDescription: String? {
        "GRUB_DEFAULT=saved in /etc/default/grub (else fail: RHEL ships it so), /boot/grub2 not on LVM, RAID, LUKS, btrfs or zfs (grub2-probe: GRUB must write grubenv at boot to clear the one-shot entry; else fail)"
    }
    public func stageDescription(release: String) -> String {
        "find the BLS entry of \(release) with grubby, set the running kernel's entry back as the saved default, and boot \(release) once (GRUB_DEFAULT=saved: a kernel that fails to boot falls back to the current default)"
    }
    public var notes: [String] {
        ["grub-bls: with UPDATEDEFAULT=yes in /etc/sysconfig/kernel (RHEL's default) the install makes the new kernel the saved default; "
            + "the stage step sets the running kernel's entry back as the default right after it, before the one-shot boot"]
    }
}

/// systemd-boot: a kernel's entry is the one `bootctl list --json=short` lists for it (kernel-install
/// names it `<entry-token>-<release>.conf`; see `BootctlList`), addressed by its id; `bootctl
/// set-oneshot` boots it once (the `LoaderEntryOneShot` EFI variable, which systemd-boot removes as
/// it boots it), `bootctl set-default` saves it (`LoaderEntryDefault`).
///
/// With no `LoaderEntryDefault` (as `bootctl install` leaves a host) and no `default` in
/// loader.conf, systemd-boot boots the entry that sorts first: the newest kernel, so the install
/// alone makes a new kernel the default. The stage step therefore saves the running kernel's
/// entry as the default before the one-shot boot, so a kernel that fails to boot falls back to
/// the old one.
public struct SystemdBootDriver: BootloaderDriver {
    public init() {}
    public var name: String { "systemd-boot" }
    /// Lists the boot loader entries (read-only).
    public static let listEntries = "bootctl list --json=short --no-pager"
    /// Forgets a staged one-shot boot: an empty id removes `LoaderEntryOneShot`.
    public static let clearNextEntry = "bootctl set-oneshot ''"
    static let marker = "@@rollctl-file systemd-boot"
    /// Whether systemd-boot is in the ESP at all (read-only; `yes` or `no`, bounded).
    public static let isInstalled = "echo '\(marker)'; bootctl is-installed 2>&1 | head -c 512; echo; true"
    public var entryListing: String? { Self.listEntries }
    public var entrySource: String { "the boot loader entries (bootctl list)" }
    public func entry(in listing: String, release: String) -> String? {
        BootctlList.parse(listing).entryID(forRelease: release)
    }
    public func expectedEntry(in listing: String?, release: String, like: String?) -> String? {
        listing.flatMap { BootctlList.parse($0).expectedEntryID(forRelease: release, like: like) } ?? "<entry-token>-\(release).conf"
    }
    static func setDefault(_ id: String) -> String { "bootctl set-default " + shellQuote(id) }
    public func stage(_ plan: Plan, entry: String?, previous: String?) -> [String] {
        (previous.map { [Self.setDefault($0)] } ?? []) + ["bootctl set-oneshot " + shellQuote(entry ?? "")]
    }
    public func commit(_ plan: Plan, entry: String?) -> [String] { [Self.setDefault(entry ?? "")] }
    public var clearOneShot: [String] { [Self.clearNextEntry] }
    public func restoreDefault(_ plan: Plan, previousRelease: String, previousEntry: String?) -> [String] {
        previousEntry.map { [Self.setDefault($0)] } ?? []
    }
    public func stageDescription(release: String) -> String {
        "find the entry of \(release) with bootctl list, save the running kernel's entry as the default (bootctl set-default), "
            + "and boot \(release) once (bootctl set-oneshot: a kernel that fails to boot falls back to the saved default)"
    }
    public var notes: [String] {
        ["systemd-boot: without a saved default it boots the newest entry, so the install alone would make the new kernel the default; "
            + "the stage step saves the running kernel's entry as the default before the one-shot boot"]
    }
    public var preflight: String? { Self.isInstalled }
    public func preflightFindings(_ output: String) -> [BootloaderFinding] {
        let said = lastSection(of: output, after: Self.marker, lines: 4)?
            .map { String($0.trimmingWhitespace()) }.first { !$0.isEmpty }
        switch said {
        case "yes": return []
        case "no": return [.init(.error, "bootctl is-installed says no: systemd-boot is not in the ESP, so a one-shot entry would not be honoured")]
        case let other?:
            return [.init(.error, "bootctl is-installed did not say yes ('\(String(other.filter { ($0.asciiValue ?? 0x20) >= 0x20 && $0 != "\u{7F}" }.prefix(120)))'): boot-once cannot be shown to work")]
        case nil: return [.init(.error, "bootctl is-installed printed nothing readable: boot-once cannot be shown to work")]
        }
    }
    public var preflightDescription: String? { "systemd-boot in the ESP (bootctl is-installed; else fail)" }
}

/// The plan's own commands; `{release}` and `{previous_release}` replaced, shell-quoted.
public struct CustomBootloader: BootloaderDriver {
    public var stageCommands: [String], commitCommands: [String], rollbackCommands: [String]
    public var name: String { "custom" }
    public var entryListing: String? { nil }
    public func entry(in listing: String, release: String) -> String? { nil }
    public func stage(_ plan: Plan, entry: String?, previous: String?) -> [String] {
        stageCommands.map { HostCommands.substitute($0, release: plan.kernel.release, previousRelease: nil) }
    }
    public func commit(_ plan: Plan, entry: String?) -> [String] {
        commitCommands.map { HostCommands.substitute($0, release: plan.kernel.release, previousRelease: nil) }
    }
    public var clearOneShot: [String] { [] }
    public func restoreDefault(_ plan: Plan, previousRelease: String, previousEntry: String?) -> [String] {
        rollbackCommands.map { HostCommands.substitute($0, release: plan.kernel.release, previousRelease: previousRelease) }
    }
    public var notes: [String] { ["custom bootloader commands: rollctl cannot check them before they run"] }
}
