import Foundation
import Basics

/// A rollout waits for a person at the plan's pause points (`waves.pause_after`) and when someone
/// asks (`rollout pause`); a person lets it go on (`rollout promote`). Both are rows of the
/// rollout, so they hold whether or not a driver is attached: a driver polls them, a resume
/// finds them.
public struct PauseState: Sendable, Equatable {
    /// Who asked for a pause after the current batch, and when; nil when nobody did.
    public var requested: String?
    /// The last wave after which a person let the rollout go on (0: none yet).
    public var promotedThrough: Int
    /// A person let it go on past every remaining pause point.
    public var promotedFully: Bool

    public init(requested: String? = nil, promotedThrough: Int = 0, promotedFully: Bool = false) {
        self.requested = requested; self.promotedThrough = promotedThrough; self.promotedFully = promotedFully
    }

    /// Whether the plan's pause point after `wave` was released by a person.
    public func released(after wave: Int) -> Bool { promotedFully || promotedThrough >= wave }
}

extension Journal {
    /// An event's `data`: a flat JSON object, keys sorted.
    static func jsonObject(_ fields: [String: String]) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? e.encode(fields)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    static func migratePauses(_ db: SQLTx) throws {
        try db.script("""
        ALTER TABLE rollout ADD COLUMN pause_requested TEXT;                       -- who asked for a pause (rollout pause), NULL: nobody
        ALTER TABLE rollout ADD COLUMN promoted_through INTEGER NOT NULL DEFAULT 0; -- pause points released up to this wave
        ALTER TABLE rollout ADD COLUMN promoted_fully INTEGER NOT NULL DEFAULT 0;   -- every pause point released (promote --full)
        """)
    }

    public func pauseState(_ rolloutID: String) throws -> PauseState {
        try store.read { db in
            guard let row = try db.one("SELECT pause_requested, promoted_through, promoted_fully FROM rollout WHERE id = ?",
                                             [rolloutID]) else { throw JournalError("no rollout \(rolloutID)") }
            return PauseState(requested: row[0], promotedThrough: row[1], promotedFully: (row[2] as Int) != 0)
        }
    }

    /// `rollout pause`: the driver pauses after its current batch (or, with none attached, the
    /// next one that resumes it, before its first batch).
    public func requestPause(_ rolloutID: String, by who: String) throws {
        try store.write { db in
            try db.execute("UPDATE rollout SET pause_requested = ? WHERE id = ?", ["\(who) at \(self.now())", rolloutID])
            try self.insertEvent(db, rolloutID, host: nil, kind: .info, "pause requested by \(who)", data: Self.jsonObject(["by": who]))
        }
    }

    /// `rollout promote`: releases the pause the rollout is in (a requested one, and the plan's
    /// pause points up to `throughWave`), or with `fully` every remaining one. Journaled as the
    /// person's decision.
    public func promote(_ rolloutID: String, throughWave: Int, fully: Bool, by who: String, note: String? = nil) throws {
        try store.write { db in
            try db.execute("""
                UPDATE rollout SET pause_requested = NULL, promoted_through = CASE WHEN promoted_through > ? THEN promoted_through ELSE ? END,
                  promoted_fully = CASE WHEN ? THEN 1 ELSE promoted_fully END WHERE id = ?
                """, [throughWave, throughWave, fully, rolloutID])
            var data: [String: String] = ["by": who, "through_wave": "\(throughWave)", "full": fully ? "true" : "false"]
            if let note { data["decision"] = note }
            try self.insertEvent(db, rolloutID, host: nil, kind: .info,
                                 "promoted by \(who)" + (fully ? ": every remaining pause released" : " after wave \(throughWave)") + (note.map { " — \($0)" } ?? ""),
                                 data: Self.jsonObject(data))
        }
    }
}
