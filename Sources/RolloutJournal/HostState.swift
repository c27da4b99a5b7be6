/// Where a host is in a rollout. The happy path:
/// `pending → checked → notified → staged → rebooting → up → verified → soaking → healthy → committed`;
/// any step can fail, after which a rollback may run; hosts that need nothing are `skipped`.
public enum HostState: String, Sendable, Codable, CaseIterable, Comparable {
    case pending, checked, notified, staged, rebooting, up, verified, soaking, healthy, committed
    case failed
    case rollingBack = "rolling_back"
    case rolledBack = "rolled_back"
    case rollbackFailed = "rollback_failed"
    case skipped

    /// Position on the happy path (failure states after it).
    public var order: Int { Self.allCases.firstIndex(of: self)! }
    public static func < (a: HostState, b: HostState) -> Bool { a.order < b.order }

    /// Ended for this rollout: nothing more will happen to the host unless rolled back.
    public var isTerminal: Bool { [.committed, .rolledBack, .rollbackFailed, .skipped].contains(self) }

    /// The host runs (or may run) something other than what it ran before the rollout:
    /// a rollback must touch it.
    public var isChanged: Bool { self >= .staged && self <= .committed }

    /// Whether a rollout that stops here must keep the host locked: it may run or boot
    /// something other than before (a rollback or a person must come), or its rollback
    /// failed. A host that failed before its staging (`releaseBefore` is journaled when
    /// the pre-check passes) is unchanged and is released like a committed one.
    public func staysLocked(releaseBefore: String?) -> Bool {
        switch self {
        case .staged, .rebooting, .up, .verified, .soaking, .healthy, .rollingBack, .rollbackFailed: true
        case .failed: releaseBefore != nil
        default: false
        }
    }

    /// The allowed transitions. The orchestrator journals only these; a journal
    /// showing another is a bug, and `Journal` refuses it.
    public func canMove(to next: HostState) -> Bool {
        switch (self, next) {
        case (.pending, .checked), (.checked, .notified), (.checked, .staged), (.notified, .staged),
             (.staged, .rebooting), (.rebooting, .up), (.up, .verified), (.verified, .soaking),
             (.soaking, .healthy), (.healthy, .committed):
            return true
        case (.pending, .skipped), (.checked, .skipped):
            return true
        case (let s, .failed) where s < .committed:
            return true
        case (let s, .rollingBack) where s.isChanged || s == .failed:
            return true
        case (.rollingBack, .rolledBack), (.rollingBack, .rollbackFailed), (.rollingBack, .rollingBack):
            return true
        // A failed rollback may be retried (`rollout rollback --failed`).
        case (.rollbackFailed, .rollingBack):
            return true
        // A re-run (resume) may repeat a step that is idempotent.
        case (let a, let b) where a == b && !a.isTerminal:
            return true
        default:
            return false
        }
    }
}

/// What resume does with a host journaled as `rebooting`: the boot id read
/// before the reboot tells whether it already happened.
public enum RebootProgress: Equatable, Sendable {
    /// The host runs a new boot: do not reboot again; go on to verify.
    case rebooted
    /// Same boot as before: the reboot did not happen (or not yet): it may be sent again.
    case notYet
    /// The host cannot be reached now: wait for it (it may be booting).
    case unknown

    public static func judge(bootIDBefore: String?, bootIDNow: String?) -> RebootProgress {
        guard let now = bootIDNow else { return .unknown }
        guard let before = bootIDBefore else { return .notYet }
        return now == before ? .notYet : .rebooted
    }
}

/// Where a rollout is. The journal keeps the raw value; a value this rollctl does not
/// know is an error when read, never a default.
public enum RolloutState: String, Sendable, Codable, CaseIterable {
    /// Being driven (or its driver died: its lease says which).
    case running
    /// Being driven, and waiting for a maintenance window or a notice's lead time; the note says
    /// until when. A driver that dies while waiting leaves it so: `rollout resume` waits on.
    case waiting
    /// Driven or not, waiting for a person (`rollout promote`): after a wave of the plan's
    /// `pause_after`, or after a batch when someone ran `rollout pause`. Keeps its locks.
    case paused
    /// Stopped by a signal, a stop request or an unwritable journal: `rollout resume` continues.
    case interrupted
    /// Stopped by a gate, a host or the failure budget (rolled back per policy).
    case halted
    case completed
    /// Stopped for good by `rollout abort`.
    case aborted
    /// Every host it changed runs its previous kernel again.
    case rolledBack = "rolled_back"

    /// Nothing is left to drive.
    public var isOver: Bool { [.completed, .aborted, .rolledBack].contains(self) }
}

/// Where a wave is.
public enum WaveState: String, Sendable, Codable, CaseIterable {
    case pending, running, passed, failed
    case rolledBack = "rolled_back"
}

/// What a journal event records (`event.kind`).
public enum EventKind: String, Sendable, Codable, CaseIterable {
    /// A host's state change (`from → to`), written with the move.
    case state
    /// What is about to be done, before the side effect.
    case intent
    /// What a side effect did, after it.
    case outcome
    /// The rollout's own news: created, lease taken over, stop requested, waits.
    case info
    /// Why the rollout halted.
    case halt
}
