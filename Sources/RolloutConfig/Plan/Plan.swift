import Foundation
import Basics
import HealthGate
import WebAPI

/// A rollout plan: everything rollctl needs to roll one kernel across a fleet.
/// Loaded from YAML by `PlanLoader` (strict, every error with file:line:col);
/// this type is the validated result, with every default filled in.
public struct Plan: Sendable {
    public var name: String
    public var description: String?
    /// Where the plan came from and its exact text (the journal keeps both).
    public var path: String
    public var text: String

    public var kernel: KernelSpec
    public var bootloader: Bootloader
    public var inventoryPath: String
    public var selection: Selection
    public var waves: WaveSpec
    public var reboot: RebootSpec
    public var gate: GateSettings
    public var notify: NotifySpec?
    public var failure: FailurePolicy
    /// When reboots may start (windows, cutoff, spacing); nil: any time.
    public var schedule: RebootSchedule?
    /// Commands around each host's reboot and on a halt.
    public var hooks = HookSpec()
    /// Firing alerts that hold a batch (`gate.block_on_alerts`); nil: none.
    public var alertBlock: AlertBlock?
    /// A silence per host during its reboot and soak (`silence`); nil: none.
    public var silence: SilenceSpec?

    public init(name: String, description: String? = nil, path: String, text: String, kernel: KernelSpec,
                bootloader: Bootloader = .grub, inventoryPath: String, selection: Selection = Selection(),
                waves: WaveSpec = WaveSpec(), reboot: RebootSpec = RebootSpec(), gate: GateSettings = GateSettings(),
                notify: NotifySpec? = nil, failure: FailurePolicy = FailurePolicy(), schedule: RebootSchedule? = nil) {
        self.name = name
        self.description = description
        self.path = path
        self.text = text
        self.kernel = kernel
        self.bootloader = bootloader
        self.inventoryPath = inventoryPath
        self.selection = selection
        self.waves = waves
        self.reboot = reboot
        self.gate = gate
        self.notify = notify
        self.failure = failure
        self.schedule = schedule
    }
}

/// The target kernel and how to install it.
public struct KernelSpec: Sendable, Equatable {
    /// The release the hosts must run afterwards, as `/proc/sys/kernel/osrelease` shows it.
    public var release: String
    /// Shell commands that install it (`{release}` is replaced, shell-quoted).
    /// Default: `apt-get install -y linux-image-{release}`; with `bootloader: grub-bls`,
    /// `dnf install -y kernel-{release}` (`KernelSpec.dnfInstall`); with `bootloader: auto`,
    /// each host's driver's default (`installGiven` false).
    public var install: [String]
    /// Whether the plan gave `kernel.install` (false: `install` is the default).
    public var installGiven: Bool
    /// Minimum free space on /boot before installing.
    public var minBootFreeBytes: UInt64
    /// Package files on rollctl's machine, shipped to every host over its SSH session and
    /// installed there (`dpkg -i` / `dnf install`) instead of `install`. Empty: `install` runs.
    public var packages: [KernelPackage]
    /// Hosts uploading at once, rollout-wide.
    public var uploadParallel: Int
    /// Bytes per second all uploads together may use; nil: no cap.
    public var uploadBandwidth: UInt64?

    public static let aptInstall = ["DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-{release}"]
    public static let dnfInstall = ["dnf install -y kernel-{release}"]

    public init(release: String, install: [String]? = nil,
                minBootFreeBytes: UInt64 = 64 << 20, packages: [KernelPackage] = [], uploadParallel: Int = 8,
                uploadBandwidth: UInt64? = nil) {
        self.release = release
        self.install = install ?? KernelSpec.aptInstall
        self.installGiven = install != nil
        self.minBootFreeBytes = minBootFreeBytes
        self.packages = packages
        self.uploadParallel = uploadParallel
        self.uploadBandwidth = uploadBandwidth
    }
}

/// A kernel package file on rollctl's machine (`kernel.packages`), checked when the plan is
/// read: it exists, is a readable regular file, and its first bytes are those of its kind.
/// Its SHA-256 is computed when a rollout starts (the file may be large), not here.
public struct KernelPackage: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case deb, rpm
    }
    /// The path as resolved against the plan's folder.
    public var path: String
    /// The file's name: what it is called on the host, and in messages.
    public var name: String
    public var kind: Kind
    /// Its size when the plan was read.
    public var size: UInt64

    public init(path: String, name: String, kind: Kind, size: UInt64) {
        self.path = path
        self.name = name
        self.kind = kind
        self.size = size
    }
}

/// How the new kernel is booted once, made default, and how the old default is restored.
public enum Bootloader: Sendable, Equatable {
    /// Each host's bootloader told from its files by the survey (`BootloaderDetection`), and
    /// journaled per host: the default. A host it cannot tell is refused before anything is touched.
    case auto
    /// rollctl finds the release's menu entry in `/boot/grub/grub.cfg` and runs
    /// `grub-reboot` / `grub-set-default` with it (needs `GRUB_DEFAULT=saved`).
    case grub
    /// GRUB with Boot Loader Specification entries (RHEL 8-10, Alma, Rocky, Fedora): the
    /// release's entry id from `grubby --info=ALL`, `grub2-reboot` / `grubby --set-default`.
    case grubBLS
    /// systemd-boot through `bootctl` (entries `<entry-token>-<release>.conf`).
    case systemdBoot
    /// Commands given by the plan; `{release}` and `{previous_release}` are replaced, shell-quoted.
    case custom(stage: [String], commit: [String], rollback: [String])
}

/// Which inventory hosts the plan covers.
public struct Selection: Sendable, Equatable {
    /// Every label must match (empty: all hosts).
    public var labels: [String: String]
    /// Only these hosts (empty: no restriction).
    public var hosts: [String]
    /// Never these hosts.
    public var exclude: [String]
    public init(labels: [String: String] = [:], hosts: [String] = [], exclude: [String] = []) {
        self.labels = labels
        self.hosts = hosts
        self.exclude = exclude
    }
}

/// The size of one wave: a count of hosts, or a share of the selected fleet.
/// Shares are cumulative targets: `[1, 25%, 100%]` means the canary, then up to
/// 25% of the fleet done, then the rest.
public enum WaveSize: Sendable, Equatable {
    case count(Int)
    case percent(Double)
}

public struct WaveSpec: Sendable, Equatable {
    /// The first entry is the canary wave.
    public var sizes: [WaveSize]
    /// How many hosts of a wave reboot at once.
    public var maxParallel: Int
    /// Label of the failure domain (e.g. `rack`) of which at most one host is down at a time.
    public var failureDomain: String?
    /// With a customers file: no two hosts of one customer in one batch.
    public var separateCustomers: Bool
    /// Wave numbers after whose gate the rollout waits for a person (`rollout promote`).
    public var pauseAfter: [Int]

    public init(sizes: [WaveSize] = [.count(1), .percent(10), .percent(50), .percent(100)], maxParallel: Int = 5,
                failureDomain: String? = nil, separateCustomers: Bool = false, pauseAfter: [Int] = []) {
        self.sizes = sizes
        self.maxParallel = maxParallel
        self.failureDomain = failureDomain
        self.separateCustomers = separateCustomers
        self.pauseAfter = pauseAfter
    }
}

public struct RebootSpec: Sendable, Equatable {
    /// The reboot command; it may return or drop the connection.
    public var command: String
    /// How long a host may take to come back with a new boot id.
    public var timeout: Duration
    /// Pause between the reboot command and the first reconnect attempt.
    public var settle: Duration

    public init(command: String = "systemctl reboot", timeout: Duration = .seconds(600), settle: Duration = .seconds(2)) {
        self.command = command
        self.timeout = timeout
        self.settle = settle
    }
}

/// Customer notices (issue 7 builds the sending; the plan carries the settings).
public struct NotifySpec: Sendable, Equatable {
    public enum Channel: Sendable, Equatable {
        case smtp(host: String, port: Int, from: String, starttls: Bool, username: String?, passwordEnv: String?, passwordFile: String?)
        case webhook(url: String)
    }
    public var customersPath: String
    public var channel: Channel
    public var leadTime: Duration
    public var company: String
    /// Subject and body templates (mustache) per kind: `maintenance`, `done`, `rolled_back`.
    public var templateDir: String?
    /// Block the wave when a notice cannot be delivered (else report and go on).
    public var blockOnFailure: Bool

    public init(customersPath: String, channel: Channel, leadTime: Duration = .zero, company: String = "Your hosting provider",
                templateDir: String? = nil, blockOnFailure: Bool = true) {
        self.customersPath = customersPath
        self.channel = channel
        self.leadTime = leadTime
        self.company = company
        self.templateDir = templateDir
        self.blockOnFailure = blockOnFailure
    }
}

public struct FailurePolicy: Sendable, Equatable {
    public enum Rollback: String, Sendable, Equatable, CaseIterable {
        /// Roll back the hosts of the failed wave.
        case wave
        /// Roll back every host the rollout changed so far.
        case all
        /// Leave hosts as they are (halt only).
        case none
    }
    public var rollback: Rollback
    /// What an inconclusive gate (no failure, but not enough evidence to pass) does: halt, or pause
    /// for a person to decide (`gate.on_inconclusive`).
    public enum Inconclusive: String, Sendable, Equatable, CaseIterable { case halt, pause }
    public var onInconclusive: Inconclusive = .halt
    /// Host failures a wave tolerates (of its hosts, for a share); one more halts the rollout.
    public var maxFailedHostsPerWave: FailureBudget
    /// Host failures tolerated across the whole rollout (of the hosts it rolls, for a share).
    public var maxFailedHostsTotal: FailureBudget
    /// Hosts failed or rolling back at the same moment, across waves (rolled-back hosts are
    /// healthy again); nil: no such limit.
    public var maxUnhealthyHosts: FailureBudget?

    public init(rollback: Rollback = .wave, maxFailedHostsPerWave: FailureBudget = 0, maxFailedHostsTotal: FailureBudget = 0,
                maxUnhealthyHosts: FailureBudget? = nil) {
        self.rollback = rollback
        self.maxFailedHostsPerWave = maxFailedHostsPerWave
        self.maxFailedHostsTotal = maxFailedHostsTotal
        self.maxUnhealthyHosts = maxUnhealthyHosts
    }
}

/// How many failed hosts a budget tolerates: a count, or a share of a number of hosts. A budget
/// tolerates `limit(of:)` failures; the rollout halts at one more ("more than the budget", as
/// Argo Rollouts' `failureLimit`; Azure's percentages are read the same way here).
public enum FailureBudget: Sendable, Equatable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    case count(Int)
    /// 0...1.
    case share(Double)

    public init(integerLiteral value: Int) { self = .count(value) }

    /// Failures tolerated among `hosts`: the count, or the share of them rounded down (2% of 120
    /// hosts tolerates 2; of 49 hosts, none).
    public func limit(of hosts: Int) -> Int {
        switch self {
        case .count(let n): return n
        case .share(let s): return Int((s * Double(hosts) + 1e-9).rounded(.down))
        }
    }

    /// `2`, or `2%`.
    public var description: String {
        switch self {
        case .count(let n): return "\(n)"
        case .share(let s):
            let p = s * 100
            return p == p.rounded() ? "\(Int(p))%" : String(format: "%g%%", p)
        }
    }
}

/// `gate.block_on_alerts`: before each batch, Alertmanager's firing alerts that match every
/// matcher hold it. Matchers naming `{name}`/`{address}` are asked per host of the batch (an
/// alert about one of them holds it); matchers without are fleet-wide. An Alertmanager that
/// cannot be asked holds the batch too (an error blocks, as in Kured). After `maxWait` the
/// rollout halts.
public struct AlertBlock: Sendable, Equatable, Codable {
    public var url: String
    public var matchers: [AlertMatcher]
    public var maxWait: Duration
    /// Time between two looks while held.
    public var interval: Duration
    public var caFile: String?

    public init(url: String, matchers: [AlertMatcher], maxWait: Duration = .seconds(3600), interval: Duration = .seconds(30),
                caFile: String? = nil) {
        self.url = url
        self.matchers = matchers
        self.maxWait = maxWait
        self.interval = interval
        self.caFile = caFile
    }

    public var perHost: Bool { matchers.contains { $0.perHost } }
}

/// `silence`: before a host reboots, a silence in Alertmanager for that host (its matchers with
/// the host's `{name}`/`{address}`), journaled, and expired once the host's gate has decided.
public struct SilenceSpec: Sendable, Equatable, Codable {
    public var url: String
    public var matchers: [AlertMatcher]
    public var comment: String
    public var caFile: String?

    public init(url: String, matchers: [AlertMatcher], comment: String = "kernel rollout", caFile: String? = nil) {
        self.url = url
        self.matchers = matchers
        self.comment = comment
        self.caFile = caFile
    }
}
