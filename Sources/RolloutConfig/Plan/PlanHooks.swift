import Foundation
import Yams
import Basics

/// A command rollctl runs at a point of a host's way (`hooks` in the plan): drain a host from the
/// load balancer before its reboot, put it back after, page someone on a halt.
public struct Hook: Sendable, Equatable {
    /// Where it runs: over the host's SSH session, or on rollctl's machine (`/bin/sh -c`).
    public enum Place: String, Sendable, Equatable, CaseIterable { case host, local }
    /// What a failure (exit ≠ 0, timeout, no connection) does: fail the host, or report it and go on.
    public enum OnError: String, Sendable, Equatable, CaseIterable { case fail, warn }
    public var run: String
    public var on: Place
    public var timeout: Duration
    public var onError: OnError

    public init(run: String, on: Place = .host, timeout: Duration = .seconds(60), onError: OnError = .fail) {
        self.run = run; self.on = on; self.timeout = timeout; self.onError = onError
    }
}

/// The plan's hooks by the moment they run.
public struct HookSpec: Sendable, Equatable {
    public enum Phase: String, Sendable, CaseIterable {
        /// After staging, right before the host's reboot: a failure fails the host, unrebooted.
        case preReboot = "pre_reboot"
        /// After the host came back on the new kernel, before the soak: a failure fails the host
        /// (its wave's rollback policy applies).
        case postBoot = "post_boot"
        /// After the host was committed: a failure is reported (the host stays committed).
        case afterCommit = "after_commit"
        /// When the rollout halts, on rollctl's machine: a failure is reported.
        case onHalt = "on_halt"
    }
    public var preReboot: [Hook] = []
    public var postBoot: [Hook] = []
    public var afterCommit: [Hook] = []
    public var onHalt: [Hook] = []
    public init() {}

    public subscript(_ phase: Phase) -> [Hook] {
        get {
            switch phase {
            case .preReboot: preReboot
            case .postBoot: postBoot
            case .afterCommit: afterCommit
            case .onHalt: onHalt
            }
        }
        set {
            switch phase {
            case .preReboot: preReboot = newValue
            case .postBoot: postBoot = newValue
            case .afterCommit: afterCommit = newValue
            case .onHalt: onHalt = newValue
            }
        }
    }

    public var isEmpty: Bool { Phase.allCases.allSatisfy { self[$0].isEmpty } }
}

extension PlanLoader {
    static let hookPhaseKeys = HookSpec.Phase.allCases.map(\.rawValue)
    static let hookKeys = ["run", "on", "timeout", "on_error"]
}

extension PlanParser {
    func parseHooks(_ node: Node) -> HookSpec? {
        guard let pairs = r.mapping(node, "hooks", allowed: PlanLoader.hookPhaseKeys) else { return nil }
        var spec = HookSpec()
        for (k, _, v) in pairs {
            guard let phase = HookSpec.Phase(rawValue: k) else { continue }
            let items: [Node]
            switch v {
            case .sequence(let seq): items = Array(seq)
            case .scalar(let s) where s.style == .plain && ["", "~", "null"].contains(s.string): items = []
            case .scalar, .mapping: items = [v]
            default:
                r.error(v, "hooks.\(k) must be a list of commands or {run, on, timeout, on_error}, found \(r.kind(v))")
                continue
            }
            spec[phase] = items.compactMap { parseHook($0, phase) }
        }
        return spec
    }

    func parseHook(_ node: Node, _ phase: HookSpec.Phase) -> Hook? {
        let what = "a hook of hooks.\(phase.rawValue)"
        var hook = Hook(run: "", on: phase == .onHalt ? .local : .host)
        var onNode: Node?
        if case .scalar = node {
            guard let s = r.string(node, what) else { return nil }
            hook.run = s
        } else {
            guard let pairs = r.mapping(node, what, allowed: PlanLoader.hookKeys) else { return nil }
            var ok = true
            for (k, _, v) in pairs {
                switch k {
                case "run": if let s = r.string(v, "\(what): run") { hook.run = s } else { ok = false }
                case "on":
                    onNode = v
                    if let p: Hook.Place = choice(v, "\(what): on") { hook.on = p } else { ok = false }
                case "timeout": if let d = duration(v, "\(what): timeout", min: .seconds(1), max: .seconds(3600)) { hook.timeout = d } else { ok = false }
                case "on_error": if let e: Hook.OnError = choice(v, "\(what): on_error") { hook.onError = e } else { ok = false }
                default: break
                }
            }
            if !pairs.contains(where: { $0.key == "run" }) { r.error(node, "\(what) needs a 'run' command"); return nil }
            guard ok else { return nil }
        }
        if hook.run.trimmed.isEmpty { r.error(node, "\(what): the command is empty"); return nil }
        if hook.run.utf8.count > 16384 { r.error(node, "\(what): the command is over 16 KiB"); return nil }
        if phase == .onHalt && hook.on == .host {
            r.error(onNode ?? node, "hooks.on_halt run on rollctl's machine (on: local): a halt concerns the rollout, not one host")
            return nil
        }
        return hook
    }
}
