import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real OpenSSH `sshd` on a free loopback port, with a throwaway host key,
/// client keys (ed25519, ecdsa, rsa) and an authorized_keys file, all in a
/// temporary directory. Needs root (sshd privilege separation) and
/// `/usr/sbin/sshd`; `make test` installs openssh-server.
///
/// With `netns`, sshd runs inside that network namespace (`ip netns exec`) on
/// `address:port` there; it counts as started when its log says it listens
/// (the test process may have no path to it: see `BastionLab`).
public final class TestSSHD: @unchecked Sendable {
    public let dir: String
    public let address: String
    public private(set) var port: Int
    /// The network namespace sshd runs in; nil: the test's own.
    public let netns: String?
    public var knownHostsPath: String { dir + "/known_hosts" }
    public var ed25519Key: String { dir + "/id_ed25519" }
    public var ecdsaKey: String { dir + "/id_ecdsa" }
    public var rsaKey: String { dir + "/id_rsa" }
    /// A key whose public half is NOT authorized.
    public var strangerKey: String { dir + "/id_stranger" }
    public var logPath: String { dir + "/sshd.log" }
    private var pid: pid_t = 0

    /// `dir`: a folder to create and use instead of a new one under /tmp (removed by `cleanUp` all the same).
    public init(maxStartups: Int = 200, extraConfig: String = "", address: String = "127.0.0.1", port: Int? = nil,
                netns: String? = nil, dir: String? = nil) throws {
        if let dir {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            self.dir = dir
        } else {
            self.dir = try Self.makeTempDir()
        }
        self.address = address
        self.netns = netns
        self.port = port ?? 0
        do {
            try setUp(maxStartups: maxStartups, extraConfig: extraConfig, freePort: port == nil)
        } catch {
            // A failed start leaves nothing behind.
            cleanUp()
            throw error
        }
    }

    private func setUp(maxStartups: Int, extraConfig: String, freePort: Bool) throws {
        if freePort { port = try Self.freePort() }
        try Self.run("/bin/mkdir", ["-p", "/run/sshd"])
        try Self.keygen(dir + "/host_ed25519", type: "ed25519")
        for (path, type) in [(ed25519Key, "ed25519"), (ecdsaKey, "ecdsa"), (rsaKey, "rsa"), (strangerKey, "ed25519")] {
            try Self.keygen(path, type: type)
        }
        var auth = ""
        for k in [ed25519Key, ecdsaKey, rsaKey] {
            auth += try String(contentsOfFile: k + ".pub", encoding: .utf8)
        }
        try auth.write(toFile: dir + "/authorized_keys", atomically: true, encoding: .utf8)
        let config = """
        ListenAddress \(self.address):\(self.port)
        HostKey \(dir)/host_ed25519
        PidFile \(dir)/sshd.pid
        AuthorizedKeysFile \(dir)/authorized_keys
        StrictModes no
        UsePAM no
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PermitRootLogin prohibit-password
        MaxStartups \(maxStartups):30:\(maxStartups * 2)
        MaxSessions 64
        LogLevel VERBOSE
        \(extraConfig)

        """
        try config.write(toFile: dir + "/sshd_config", atomically: true, encoding: .utf8)
        try writeKnownHosts()
        try start()
    }

    deinit { stop() }

    /// The current user's name (sshd runs commands as this user).
    public var user: String { String(cString: getpwuid(geteuid()).pointee.pw_name) }

    /// Writes known_hosts with the current host key (`[addr]:port`, or `addr` on port 22, as OpenSSH writes them).
    public func writeKnownHosts() throws {
        try knownHostsLine().write(toFile: knownHostsPath, atomically: true, encoding: .utf8)
    }

    /// The known_hosts line for the current host key.
    public func knownHostsLine() throws -> String {
        let pub = try String(contentsOfFile: dir + "/host_ed25519.pub", encoding: .utf8)
        let parts = pub.split(separator: " ")
        let pattern = port == 22 ? address : "[\(address)]:\(port)"
        return "\(pattern) \(parts[0]) \(parts[1])\n"
    }

    public func start() throws {
        // Only what this start writes to the log counts (sshd appends).
        let logStart = (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0
        let sshd = ["/usr/sbin/sshd", "-D", "-f", dir + "/sshd_config", "-E", logPath]
        // `ip netns exec` execs sshd in place (no fork): the pid is sshd's.
        let p = try netns.map { try Spawn.start("/usr/sbin/ip", ["netns", "exec", $0] + sshd) }
            ?? Spawn.start(sshd[0], Array(sshd.dropFirst()))
        pid = p
        let deadline = Date().addingTimeInterval(10)
        let listening = "Server listening on \(address) port \(port)"
        while Date() < deadline {
            if netns == nil ? Self.canConnect(address, port)
                : Self.logTail(logPath, from: logStart).contains(listening) { return }
            if !Spawn.isRunning(p) {
                pid = 0
                let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                throw TestSSHDError("sshd exited at start: \(log)")
            }
            usleep(20_000)
        }
        throw TestSSHDError("sshd did not listen on \(address):\(port) within 10 s")
    }

    public func stop() {
        guard pid > 0 else { return }
        kill(pid, SIGTERM)
        _ = Spawn.wait(pid)
        pid = 0
    }

    /// Restarts sshd with a NEW host key (a man in the middle, or a reinstall),
    /// leaving known_hosts as it was.
    public func restartWithNewHostKey() throws {
        stop()
        try? FileManager.default.removeItem(atPath: dir + "/host_ed25519")
        try? FileManager.default.removeItem(atPath: dir + "/host_ed25519.pub")
        try Self.keygen(dir + "/host_ed25519", type: "ed25519")
        try start()
    }

    /// Removes the temporary directory (after stopping sshd).
    public func cleanUp() {
        stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    // MARK: helpers

    public static func makeTempDir() throws -> String {
        var template = Array("/tmp/rollctl-test-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw TestSSHDError("mkdtemp failed") }
        return String(cString: p)
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago.
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
                guard bind(fd, p, len) == 0 else { return -1 }
                return getsockname(fd, p, &len)
            }
        }
        guard rc == 0 else { throw TestSSHDError("cannot find a free port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    static func logTail(_ path: String, from offset: Int) -> String {
        guard let data = FileManager.default.contents(atPath: path), data.count > offset else { return "" }
        return String(decoding: data.dropFirst(offset), as: UTF8.self)
    }

    static func canConnect(_ address: String, _ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr(address)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    static func keygen(_ path: String, type: String) throws {
        var args = ["-q", "-t", type, "-N", "", "-f", path]
        if type == "rsa" { args += ["-b", "2048"] }
        try run("/usr/bin/ssh-keygen", args)
    }

    @discardableResult
    public static func run(_ exe: String, _ args: [String]) throws -> String {
        let (status, text) = try Spawn.run(exe, args)
        guard status == 0 else { throw TestSSHDError("\(exe) \(args.joined(separator: " ")) failed: \(text)") }
        return text
    }
}

public struct TestSSHDError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
