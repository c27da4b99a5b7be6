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
    public func stageDescription(release: String) -> String {
        "find the BLS entry of \(release) with grubby, set the running kernel's entry back as the saved default, and boot \(release) once (GRUB_DEFAULT=saved: a kernel that fails to boot falls back to the current default)"
    }
    public var notes: [String] {
        ["grub-bls: with UPDATEDEFAULT=yes in /etc/sysconfig/kernel (RHEL's default) the install makes the new kernel the saved default; "
            + "the stage step sets the running kernel's entry back as the default right after it, before the one-shot boot"]
    }
}

/// systemd-boot: entries named `<entry-token>-<release>.conf` (the token from
/// `/etc/kernel/entry-token`, else the machine id), `bootctl set-oneshot` and `set-default`.
public struct SystemdBootDriver: BootloaderDriver {
    public init() {}
    public var name: String { "systemd-boot" }
    public var entryListing: String? { nil }
    public func entry(in listing: String, release: String) -> String? { nil }
    static let token = "\"$(cat /etc/kernel/entry-token 2>/dev/null || cat /etc/machine-id)\""
    static func entryFile(_ release: String) -> String { "\(token)-\(shellQuote(release)).conf" }
    public func stage(_ plan: Plan, entry: String?, previous: String?) -> [String] {
        ["bootctl set-oneshot " + Self.entryFile(plan.kernel.release)]
    }
    public func commit(_ plan: Plan, entry: String?) -> [String] { ["bootctl set-default " + Self.entryFile(plan.kernel.release)] }
    public var clearOneShot: [String] { [] }
    public func restoreDefault(_ plan: Plan, previousRelease: String, previousEntry: String?) -> [String] {
        ["bootctl set-default " + Self.entryFile(previousRelease)]
    }
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
