import Foundation
import Basics

/// One run of a plan hook: journaled as `running` before it starts (the intent) and with its
/// outcome after. A resume skips hooks whose outcome is journaled and runs again a hook left
/// `running` (its outcome is unknown): hooks must be safe to run twice.
public struct HookRunRow: Sendable, Equatable {
    public enum Status: String, Sendable { case running, ok, warned, failed }
    public var host: String
    public var phase: String
    public var wave: Int
    public var index: Int
    public var status: Status
    public var exitStatus: Int?
    /// The end of what it printed (stdout and stderr), at most `HookRunRow.outputCap` bytes.
    public var output: String?
    public var error: String?
    public var startedAt: String
    public var endedAt: String?

    public static let outputCap = 4096
}

extension Journal {
    static func migrateHooks(_ db: SQLTx) throws {
        try db.script("""
        CREATE TABLE hook_run (
          rollout_id TEXT NOT NULL REFERENCES rollout(id),
          host TEXT NOT NULL,          -- inventory name; '' for on_halt (the rollout's)
          phase TEXT NOT NULL,         -- pre_reboot | post_boot | after_commit | on_halt
          wave INTEGER NOT NULL,
          idx INTEGER NOT NULL,        -- the hook's place in its list
          status TEXT NOT NULL,        -- running | ok | warned | failed
          exit_status INTEGER,
          output TEXT,                 -- the end of its output, capped
          error TEXT,
          started_at TEXT NOT NULL,
          ended_at TEXT,
          PRIMARY KEY (rollout_id, host, phase, wave, idx)
        );
        """)
    }

    public func hookRun(_ rolloutID: String, host: String, phase: String, wave: Int, index: Int) throws -> HookRunRow? {
        try store.read { db in
            try db.one("SELECT * FROM hook_run WHERE rollout_id = ? AND host = ? AND phase = ? AND wave = ? AND idx = ?",
                             [rolloutID, host, phase, wave, index]).map(Self.hookRun(from:))
        }
    }

    public func hookRuns(_ rolloutID: String) throws -> [HookRunRow] {
        try store.read { db in
            try db.all("SELECT * FROM hook_run WHERE rollout_id = ? ORDER BY started_at, host, phase, idx", [rolloutID])
                .map(Self.hookRun(from:))
        }
    }

    static func hookRun(from row: SQLRow) -> HookRunRow {
        HookRunRow(host: row["host"], phase: row["phase"], wave: row["wave"], index: row["idx"],
                   status: HookRunRow.Status(rawValue: row["status"]) ?? .failed, exitStatus: row["exit_status"],
                   output: row["output"], error: row["error"], startedAt: row["started_at"], endedAt: row["ended_at"])
    }

    /// The intent: the hook is about to run (again, when a resume found its outcome unknown).
    public func hookStarting(_ rolloutID: String, host: String, phase: String, wave: Int, index: Int, command: String) async throws {
        try await group.submit { db in
            try db.execute("""
                INSERT INTO hook_run (rollout_id, host, phase, wave, idx, status, started_at) VALUES (?, ?, ?, ?, ?, 'running', ?)
                ON CONFLICT (rollout_id, host, phase, wave, idx) DO UPDATE SET status = 'running', started_at = excluded.started_at,
                  exit_status = NULL, output = NULL, error = NULL, ended_at = NULL
                """, [rolloutID, host, phase, wave, index, self.now()])
            try self.insertEvent(db, rolloutID, host: host.isEmpty ? nil : host, kind: .intent, "hook \(phase)[\(index)]: run `\(command.prefix(200))`",
                                 data: Self.jsonObject(["phase": phase, "index": "\(index)"]))
        }
    }

    /// The outcome.
    public func hookEnded(_ rolloutID: String, host: String, phase: String, wave: Int, index: Int, status: HookRunRow.Status,
                          exitStatus: Int?, output: String, error: String?) async throws {
        let tail = String(decoding: output.utf8.suffix(HookRunRow.outputCap), as: UTF8.self)
        try await group.submit { db in
            try db.execute("""
                UPDATE hook_run SET status = ?, exit_status = ?, output = ?, error = ?, ended_at = ?
                WHERE rollout_id = ? AND host = ? AND phase = ? AND wave = ? AND idx = ?
                """, [status.rawValue, exitStatus, tail, error, self.now(), rolloutID, host, phase, wave, index])
            let what = error ?? exitStatus.map { "exit \($0)" } ?? "done"
            try self.insertEvent(db, rolloutID, host: host.isEmpty ? nil : host, kind: .outcome, "hook \(phase)[\(index)]: \(status.rawValue) (\(what))",
                                 data: Self.jsonObject(["phase": phase, "index": "\(index)", "status": status.rawValue, "exit": exitStatus.map(String.init) ?? ""]))
        }
    }

    /// The marker event's data once a halt's follow-up (known-bad, on_halt hooks, the rollback
    /// policy) is done (`Orchestrator.finishHalt`).
    public static let afterHaltDone = "{\"after_halt\":\"done\"}"

    /// True when the rollout's last halt was journaled but its follow-up was never marked done:
    /// its driver died in between. Read from the journal alone (a resume asks before it reopens).
    public func haltFollowUpOwed(_ rolloutID: String) throws -> Bool {
        let events = try self.events(rolloutID)
        guard let halt = events.lastIndex(where: { $0.kind == .halt }) else { return false }
        return !events[halt...].contains { $0.kind == .outcome && $0.data == Self.afterHaltDone }
    }
}
