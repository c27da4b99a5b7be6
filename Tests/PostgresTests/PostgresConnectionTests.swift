import Foundation
import Testing
import Postgres
import PostgresTesting

/// The libpq wrapper against a real PostgreSQL server (`TestPostgres`).
@Suite struct PostgresConnectionTests {
    func connect() throws -> (PostgresConnection, TestPostgres, String) {
        let server = try TestPostgres.shared()
        let db = try server.createDatabase()
        return (try PostgresConnection(conninfo: server.url(db)), server, db)
    }

    @Test func valuesTravelAsParametersNeverAsSQL() throws {
        let (c, server, db) = try connect()
        try c.executeScript("CREATE TABLE t (name TEXT PRIMARY KEY, n BIGINT, ok BOOLEAN, note TEXT)")
        let hostile = "x'); DROP TABLE t; --"
        let inserted = try c.execute("INSERT INTO t (name, n, ok, note) VALUES ($1, $2, $3, $4)", [.text(hostile), .int(Int64.max), .bool(true), nil])
        #expect(inserted.affectedRows == 1)
        let r = try c.execute("SELECT name, n, ok, note FROM t WHERE name = $1", [.text(hostile)])
        #expect(r.rowCount == 1)
        #expect(r.value(row: 0, column: 0) == hostile)
        #expect(r.value(row: 0, column: 1) == String(Int64.max))
        #expect(r.value(row: 0, column: 2) == "t")
        #expect(r.value(row: 0, column: 3) == nil)
        #expect(r.column(named: "note") == 3 && r.column(named: "missing") == nil)
        // The table is still there, seen from another client.
        #expect(try server.psql(db, "SELECT count(*) FROM t").trimmingCharacters(in: .whitespacesAndNewlines) == "1")
    }

    @Test func serverErrorsCarrySQLSTATE() throws {
        let (c, _, _) = try connect()
        try c.executeScript("CREATE TABLE t (k TEXT PRIMARY KEY)")
        try c.execute("INSERT INTO t VALUES ($1)", [.text("a")])
        do {
            try c.execute("INSERT INTO t VALUES ($1)", [.text("a")])
            Issue.record("a duplicate key was accepted")
        } catch let e as PostgresError {
            #expect(e.code == .server)
            #expect(e.sqlState == "23505")
            #expect(e.description.contains("SQLSTATE 23505"))
        }
        #expect { try c.execute("SELEC 1") } throws: { ($0 as? PostgresError)?.sqlState == "42601" }
        // The session is usable after an error outside a transaction.
        #expect(try c.execute("SELECT 1").value(row: 0, column: 0) == "1")
    }

    @Test func aTransactionThatThrowsLeavesNothing() throws {
        let (c, _, _) = try connect()
        try c.executeScript("CREATE TABLE t (k TEXT)")
        struct Stop: Error {}
        #expect(throws: Stop.self) {
            try c.transaction { c in
                try c.execute("INSERT INTO t VALUES ($1)", [.text("a")])
                throw Stop()
            }
        }
        try c.transaction { c in _ = try c.execute("INSERT INTO t VALUES ($1)", [.text("b")]) }
        let r = try c.execute("SELECT k FROM t")
        #expect(r.rowCount == 1 && r.value(row: 0, column: 0) == "b")
    }

    @Test func aServerThatIsNotThereIsAConnectionFailure() throws {
        let port = try TestPostgres.unusedPort()
        #expect { try PostgresConnection(conninfo: "postgres://rollctl@127.0.0.1:\(port)/x?connect_timeout=2") } throws: {
            ($0 as? PostgresError)?.code == .connectionFailed && ($0 as? PostgresError)?.isTransient == true
        }
    }

    /// The password comes from libpq's own sources (here a passfile, as ~/.pgpass), never the URL.
    @Test func thePasswordComesFromThePassfile() throws {
        let server = try TestPostgres.shared()
        let db = try server.createDatabase(owner: "withpass")
        let dir = NSTemporaryDirectory() + "pgpass-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = dir + "/good", bad = dir + "/bad"
        try "127.0.0.1:\(server.port):\(db):withpass:secret\n".write(toFile: good, atomically: true, encoding: .utf8)
        try "127.0.0.1:\(server.port):\(db):withpass:wrong\n".write(toFile: bad, atomically: true, encoding: .utf8)
        chmod(good, 0o600); chmod(bad, 0o600)
        let c = try PostgresConnection(conninfo: server.url(db, user: "withpass"), settings: ["passfile": good])
        #expect(try c.execute("SELECT current_user").value(row: 0, column: 0) == "withpass")
        do {
            _ = try PostgresConnection(conninfo: server.url(db, user: "withpass"), settings: ["passfile": bad])
            Issue.record("a wrong password was accepted")
        } catch let e as PostgresError {
            #expect(e.code == .connectionFailed)
            #expect(e.message.contains("password authentication failed"))
            #expect(!e.description.contains("wrong"))
        }
    }

    /// libpq's TLS settings pass through: `require` encrypts, `verify-full` checks the server's
    /// certificate against the given CA and refuses one it does not trust.
    @Test func tlsIsUsedAndVerifiedWhenTheURLAsks() throws {
        let server = try TestPostgres.shared()
        let db = try server.createDatabase()
        let plain = try PostgresConnection(conninfo: server.url(db) + "?sslmode=disable")
        #expect(!plain.usesTLS)
        let required = try PostgresConnection(conninfo: server.url(db) + "?sslmode=require")
        #expect(required.usesTLS)
        let verified = try PostgresConnection(conninfo: server.url(db) + "?sslmode=verify-full&sslrootcert=\(server.caPath)")
        #expect(verified.usesTLS)
        #expect(try verified.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").value(row: 0, column: 0) == "t")
        let stranger = try TestPostgres.selfSignedCertificate(commonName: "stranger")
        defer { try? FileManager.default.removeItem(atPath: stranger.directory) }
        #expect { try PostgresConnection(conninfo: server.url(db) + "?sslmode=verify-full&sslrootcert=\(stranger.certificate)") } throws: {
            ($0 as? PostgresError)?.code == .connectionFailed
        }
    }
}
