import Foundation
import SSHTesting
#if canImport(Glibc)
import Glibc
#endif

/// A real PostgreSQL server (Debian's `postgresql` package, version 15) for tests: a new
/// cluster made by `initdb` in a temporary folder, listening on a free loopback port and on
/// a Unix socket in that folder. PostgreSQL refuses to run as root, so the cluster belongs
/// to the `postgres` user and both programs run as it (`setpriv`, which execs: the pid is
/// the server's). `make deps` installs the package.
///
/// Logins from loopback are `trust` (no password) for the superuser `rollctl`, and need a
/// password (`scram-sha-256`) for the role `withpass` (password `secret`), so tests can check
/// where libpq takes it from.
public final class TestPostgres: @unchecked Sendable {
    public static let bin = "/usr/lib/postgresql/15/bin"
    public let dir: String
    public let port: Int
    public let user = "rollctl"
    public var dataDir: String { dir + "/data" }
    public var logPath: String { dir + "/postgres.log" }
    /// The server's certificate (self-signed, for 127.0.0.1): `sslrootcert=` for `verify-full`.
    public var caPath: String { dir + "/server.crt" }
    private var pid: pid_t = 0
    private let lock = NSLock()
    private var databases = 0

    /// Loopback addresses it listens on (all with the same port): a second one lets a test cut
    /// one client's path to the server (iptables on that address) and not another's.
    public let addresses: [String]

    public init(addresses: [String] = ["127.0.0.1"]) throws {
        self.addresses = addresses
        dir = try TestSSHD.makeTempDir()
        port = try TestSSHD.freePort()
        do { try start() } catch {
            stop()
            throw error
        }
    }

    private func asPostgres(_ exe: String, _ args: [String]) -> (String, [String]) {
        ("/usr/bin/setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", "--", exe] + args)
    }

    private func start() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.bin + "/postgres") else {
            throw TestSSHDError("\(Self.bin)/postgres not found: install Debian's postgresql package (make deps)")
        }
        chmod(dir, 0o700)
        _ = try TestSSHD.run("/bin/chown", ["postgres:postgres", dir])
        let (exe, args) = asPostgres(Self.bin + "/initdb", ["-D", dataDir, "-U", user, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
        let (status, out) = try Spawn.run(exe, args)
        guard status == 0 else { throw TestSSHDError("initdb failed: \(out)") }
        // Loopback TCP: the superuser without a password, everyone else with one.
        let hba = """
        local all all trust
        host all rollctl 127.0.0.1/32 trust
        host all all 127.0.0.1/32 scram-sha-256

        """
        try hba.write(toFile: dataDir + "/pg_hba.conf", atomically: false, encoding: .utf8)
        _ = try TestSSHD.run("/bin/chown", ["postgres:postgres", dataDir + "/pg_hba.conf"])
        // TLS offered (not required): a throwaway certificate for 127.0.0.1, which `caPath` verifies.
        _ = try TestSSHD.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                                                  "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", dir + "/server.key", "-out", caPath])
        chmod(dir + "/server.key", 0o600)
        _ = try TestSSHD.run("/bin/chown", ["postgres:postgres", dir + "/server.key", caPath])
        let (pexe, pargs) = asPostgres(Self.bin + "/postgres", ["-D", dataDir, "-k", dir, "-p", "\(port)", "-h", addresses.joined(separator: ","),
                                                                "-c", "max_connections=200", "-c", "shared_buffers=16MB",
                                                                "-c", "ssl=on", "-c", "ssl_cert_file=\(caPath)", "-c", "ssl_key_file=\(dir)/server.key"])
        pid = try Spawn.start(pexe, pargs, outputPath: logPath)
        let deadline = Date().addingTimeInterval(30)
        while true {
            let (s, _) = try Spawn.run(Self.bin + "/pg_isready", ["-h", "127.0.0.1", "-p", "\(port)", "-U", user, "-d", "postgres", "-t", "1"])
            if s == 0 { break }
            if !Spawn.isRunning(pid) {
                pid = 0
                throw TestSSHDError("postgres exited at start: \((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")")
            }
            if Date() > deadline { throw TestSSHDError("postgres did not accept connections within 30 s: \((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")") }
            usleep(100_000)
        }
        _ = try psql("postgres", "CREATE ROLE withpass LOGIN PASSWORD 'secret'")
    }

    /// Runs `sql` with psql as the superuser on `database`; returns its output (unaligned, tuples only).
    @discardableResult
    public func psql(_ database: String, _ sql: String) throws -> String {
        let (s, out) = try Spawn.run(Self.bin + "/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", user, "-d", database,
                                                       "-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-c", sql])
        guard s == 0 else { throw TestSSHDError("psql \(database): \(sql): \(out)") }
        return out
    }

    /// A new, empty database (owned by `owner`, the superuser by default); returns its name.
    public func createDatabase(owner: String? = nil) throws -> String {
        lock.lock()
        databases += 1
        let name = "t\(getpid())_\(databases)"
        lock.unlock()
        try psql("postgres", "CREATE DATABASE \(name)" + (owner.map { " OWNER \($0)" } ?? ""))
        return name
    }

    /// `postgres://rollctl@127.0.0.1:PORT/DATABASE` (or at another of its `addresses`).
    public func url(_ database: String, user: String? = nil, address: String = "127.0.0.1") -> String {
        "postgres://\(user ?? self.user)@\(address):\(port)/\(database)"
    }

    /// A throwaway self-signed certificate in a new folder (remove `directory` when done).
    public static func selfSignedCertificate(commonName: String) throws -> (directory: String, certificate: String, key: String) {
        let d = try TestSSHD.makeTempDir()
        _ = try TestSSHD.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=\(commonName)",
                                                  "-keyout", d + "/key.pem", "-out", d + "/cert.pem"])
        return (d, d + "/cert.pem", d + "/key.pem")
    }

    /// A loopback port nothing listened on a moment ago.
    public static func unusedPort() throws -> Int { try TestSSHD.freePort() }

    /// Stops the server (fast shutdown: sessions are ended) and removes its folder.
    public func stop() {
        if pid > 0 {
            kill(pid, SIGINT)
            var waited = 0
            while Spawn.isRunning(pid) && waited < 200 { usleep(50_000); waited += 1 }
            if Spawn.isRunning(pid) { kill(pid, SIGKILL); _ = Spawn.wait(pid) }
            pid = 0
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    deinit { stop() }

    // MARK: - one server per test process

    nonisolated(unsafe) private static var sharedServer: TestPostgres?
    private static let sharedLock = NSLock()

    /// The server every test of this process shares (each test takes a database of its own);
    /// started at the first call, stopped when the process exits.
    public static func shared() throws -> TestPostgres {
        sharedLock.lock(); defer { sharedLock.unlock() }
        if let s = sharedServer { return s }
        let s = try TestPostgres()
        sharedServer = s
        atexit { TestPostgres.stopShared() }
        return s
    }

    static func stopShared() {
        sharedLock.lock(); defer { sharedLock.unlock() }
        sharedServer?.stop()
        sharedServer = nil
    }
}
