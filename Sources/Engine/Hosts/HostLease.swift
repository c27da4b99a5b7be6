import Foundation
import Basics

/// A lease kept on the host itself (`/var/lib/rollctl/lease`), so that two rollouts
/// from two journals (two admins, each with a journal in their home) never roll the
/// same host at once: the journal's host locks only see rollouts of that journal.
///
/// Taken at the pre-check, before anything changes; renewed at each step that
/// touches the host; released when the host is committed, rolled back or its rollout
/// aborted. Every check-and-write runs under `flock(1)` on the host, so two rollouts
/// reaching one host at the same moment cannot both take it. Expiry is in the host's
/// own clock (epoch seconds), so the driver's and the host's clocks need not agree.
public enum HostLease {
    public static let directory = "/var/lib/rollctl"
    public static let path = directory + "/lease"
    /// Long enough for a wave with its soak and pauses; renewed at every step.
    public static let ttl: Duration = .seconds(6 * 3600)

    /// Who holds a host: parsed from the lease file (`key=value` lines).
    public struct Holder: Sendable, Equatable, CustomStringConvertible {
        public var rollout: String
        public var journal: String
        public var driver: String
        public var since: Int
        public var expires: Int

        public var description: String {
            "rollout \(rollout) (journal \(journal.prefix(8)), driven from \(driver), since \(Self.time(since)), expires \(Self.time(expires)))"
        }

        public static func time(_ epoch: Int) -> String {
            Date(timeIntervalSince1970: TimeInterval(epoch)).formatted(.iso8601)
        }

        /// Parses the file's text; nil when it is not a lease (bounded: the first 4 KiB).
        public static func parse(_ text: String) -> Holder? {
            var f: [String: String] = [:]
            for line in text.prefix(4096).split(separator: "\n") {
                guard let eq = line.firstIndex(of: "=") else { continue }
                f[String(line[..<eq])] = String(line[line.index(after: eq)...].prefix(256))
            }
            guard let r = f["rollout"], let j = f["journal"] else { return nil }
            return Holder(rollout: r, journal: j, driver: f["driver"] ?? "?", since: Int(f["since"] ?? "") ?? 0, expires: Int(f["expires"] ?? "") ?? 0)
        }
    }

    /// What taking the lease found.
    public enum Outcome: Sendable, Equatable {
        /// Ours now (new, renewed).
        case taken
        /// Ours now, taken over from an expired lease of another rollout.
        case takenOver(from: Holder)
        /// Another rollout's live lease: the host must not be touched.
        case held(by: Holder)
    }

    static let prologue = "L=\(directory); umask 077; mkdir -p \"$L\" && exec 9>>\"$L/.lock\" && flock -w 20 9 || { echo 'ERR cannot lock '\"$L\"; exit 3; }; now=$(date +%s); "

    /// Takes (or renews) the lease for `rollout` of `journal` unless another live lease holds it.
    public static func takeCommand(rollout: String, journal: String, driver: String, ttl: Duration = ttl) -> String {
        let secs = Int(ttl.components.seconds)
        return prologue
            + "R=\(shellQuote(rollout)); J=\(shellQuote(journal)); D=\(shellQuote(driver)); since=$now; "
            + "if [ -f \"$L/lease\" ]; then o_r=$(sed -n 's/^rollout=//p' \"$L/lease\"); o_j=$(sed -n 's/^journal=//p' \"$L/lease\"); "
            + "o_e=$(sed -n 's/^expires=//p' \"$L/lease\"); o_s=$(sed -n 's/^since=//p' \"$L/lease\"); "
            + "if [ \"$o_r\" = \"$R\" ] && [ \"$o_j\" = \"$J\" ]; then since=${o_s:-$now}; "
            + "elif [ \"${o_e:-0}\" -gt \"$now\" ] 2>/dev/null; then echo HELD; head -c 4096 \"$L/lease\"; exit 0; "
            + "else echo EXPIRED; head -c 4096 \"$L/lease\"; echo; echo END; fi; fi; "
            + "printf 'rollout=%s\\njournal=%s\\ndriver=%s\\nsince=%s\\nexpires=%s\\n' \"$R\" \"$J\" \"$D\" \"$since\" $((now + \(secs))) > \"$L/lease.tmp\" "
            + "&& mv -f \"$L/lease.tmp\" \"$L/lease\" && echo TAKEN"
    }

    /// Removes the lease if (and only if) it is this rollout's.
    public static func releaseCommand(rollout: String, journal: String) -> String {
        prologue
            + "R=\(shellQuote(rollout)); J=\(shellQuote(journal)); "
            + "if [ -f \"$L/lease\" ] && [ \"$(sed -n 's/^rollout=//p' \"$L/lease\")\" = \"$R\" ] && [ \"$(sed -n 's/^journal=//p' \"$L/lease\")\" = \"$J\" ]; then rm -f \"$L/lease\"; echo RELEASED; else echo NOT-OURS; fi"
    }

    /// Prints the lease (or nothing).
    public static let readCommand = "cat \(path) 2>/dev/null | head -c 4096; true"

    /// Removes whatever lease the host has (`fleet unlock --force`).
    public static let forceReleaseCommand = prologue + "rm -f \"$L/lease\" && echo RELEASED"

    /// Interprets `takeCommand`'s output.
    public static func parseTake(_ stdout: String) throws -> Outcome {
        let lines = stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        switch lines.first {
        case "TAKEN": return .taken
        case "HELD":
            guard let h = Holder.parse(lines.dropFirst().joined(separator: "\n")) else { throw StepError("the host's lease file \(path) is not a lease: \(stdout.prefix(200))") }
            return .held(by: h)
        case "EXPIRED":
            let end = lines.firstIndex(of: "END") ?? lines.count
            let old = Holder.parse(lines[1..<end].joined(separator: "\n")) ?? Holder(rollout: "?", journal: "?", driver: "?", since: 0, expires: 0)
            guard lines.dropFirst(end).contains("TAKEN") else { throw StepError("could not take over the expired lease in \(path): \(stdout.prefix(200))") }
            return .takenOver(from: old)
        default:
            throw StepError("could not take the host lease \(path): \(stdout.prefix(200))")
        }
    }
}
