import Foundation
import Basics

/// Where one host's soak stands, for the live view, `rollout watch` and `rollctl serve`:
/// what the gate has seen so far. Observation, not state: the verdict and its evidence
/// are in `gate_report`. Written at most about once a second for all soaking hosts at once.
public struct SoakProgress: Sendable, Equatable, Codable {
    public var host: String
    public var wave: Int
    /// Samples taken, and how many the soak plans.
    public var samples: Int
    public var planned: Int
    /// SUnreclaim at the latest sample that read it, in bytes.
    public var sUnreclaimBytes: UInt64?
    /// The fitted growth so far (Theil–Sen), once three samples read SUnreclaim.
    public var slopeBytesPerHour: Double?
    /// Test-site requests that succeeded, of those made, since the soak started.
    public var siteOK: Int
    public var siteTotal: Int
    /// OOM kills since the soak started.
    public var oomKills: UInt64
    /// (seconds since the soak started, SUnreclaim bytes) of every sample so far: the live chart.
    /// Kept in a column of its own: the live view reads only the rest.
    public var series: [[Double]]

    private enum CodingKeys: String, CodingKey {
        case host, wave, samples, planned, sUnreclaimBytes, slopeBytesPerHour, siteOK, siteTotal, oomKills
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        host = try c.decode(String.self, forKey: .host)
        wave = try c.decode(Int.self, forKey: .wave)
        samples = try c.decode(Int.self, forKey: .samples)
        planned = try c.decode(Int.self, forKey: .planned)
        sUnreclaimBytes = try c.decodeIfPresent(UInt64.self, forKey: .sUnreclaimBytes)
        slopeBytesPerHour = try c.decodeIfPresent(Double.self, forKey: .slopeBytesPerHour)
        siteOK = try c.decode(Int.self, forKey: .siteOK)
        siteTotal = try c.decode(Int.self, forKey: .siteTotal)
        oomKills = try c.decode(UInt64.self, forKey: .oomKills)
        series = []
    }

    public init(host: String, wave: Int, samples: Int = 0, planned: Int = 0, sUnreclaimBytes: UInt64? = nil,
                slopeBytesPerHour: Double? = nil, siteOK: Int = 0, siteTotal: Int = 0, oomKills: UInt64 = 0, series: [[Double]] = []) {
        self.host = host
        self.wave = wave
        self.samples = samples
        self.planned = planned
        self.sUnreclaimBytes = sUnreclaimBytes
        self.slopeBytesPerHour = slopeBytesPerHour
        self.siteOK = siteOK
        self.siteTotal = siteTotal
        self.oomKills = oomKills
        self.series = series
    }
}

extension Journal {
    static func migrateSoakProgress(_ db: SQLTx) throws {
        try db.script("""
        CREATE TABLE soak_progress (
          rollout_id TEXT NOT NULL REFERENCES rollout(id),
          host TEXT NOT NULL,
          wave INTEGER NOT NULL,
          progress TEXT NOT NULL,      -- SoakProgress as JSON, without the series
          series TEXT NOT NULL,        -- [[seconds, SUnreclaim bytes], ...]
          at TEXT NOT NULL,
          PRIMARY KEY (rollout_id, host)
        );
        """)
    }

    /// Replaces these hosts' progress (one transaction).
    public func saveSoakProgress(_ rolloutID: String, _ rows: [SoakProgress]) async throws {
        guard !rows.isEmpty else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let encoded = try rows.map { ($0, String(decoding: try encoder.encode($0), as: UTF8.self), String(decoding: try encoder.encode($0.series), as: UTF8.self)) }
        try await group.submit { db in
            let save = """
                INSERT INTO soak_progress (rollout_id, host, wave, progress, series, at) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (rollout_id, host) DO UPDATE SET wave = excluded.wave, progress = excluded.progress, series = excluded.series, at = excluded.at
                """
            let at = self.now()
            for (row, json, series) in encoded { try db.execute(save, cached: true, [rolloutID, row.host, row.wave, json, series, at]) }
        }
    }

    /// The soak progress of `wave`'s hosts, by host name; with `series`, their SUnreclaim series too.
    public func soakProgress(_ rolloutID: String, wave: Int, series: Bool = false) throws -> [String: SoakProgress] {
        let decoder = JSONDecoder()
        return try store.read { db in
            var out: [String: SoakProgress] = [:]
            let sql = "SELECT host, progress\(series ? ", series" : "") FROM soak_progress WHERE rollout_id = ? AND wave = ?"
            for row in try db.all(sql, [rolloutID, wave]) {
                let text: String = row["progress"]
                guard var p = try? decoder.decode(SoakProgress.self, from: Data(text.utf8)) else { continue }
                if series, let s: String = row["series"] { p.series = (try? decoder.decode([[Double]].self, from: Data(s.utf8))) ?? [] }
                out[row["host"]] = p
            }
            return out
        }
    }
}
