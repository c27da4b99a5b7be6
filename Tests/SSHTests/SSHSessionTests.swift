import Foundation
import Testing
import SSHTesting
@testable import Basics
@testable import SSH

/// Every test here talks to a real OpenSSH sshd on loopback.
@Suite("SSH against a real sshd", .serialized)
struct SSHSessionTests {
    static func options(_ d: TestSSHD, key: String? = nil, policy: HostKeyPolicy = .strict, knownHosts: String? = nil) -> SSHConnectOptions {
        SSHConnectOptions(connectTimeout: .seconds(5), knownHostsPath: knownHosts ?? d.knownHostsPath, hostKeyPolicy: policy,
                          identityFiles: [key ?? d.ed25519Key], useAgent: false)
    }
    static func endpoint(_ d: TestSSHD) -> SSHEndpoint {
        SSHEndpoint(name: "test-host", address: d.address, port: d.port, user: d.user)
    }

    @Test func execReturnsStatusStdoutStderr() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let s = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d))
        let r = try await s.exec("echo out; echo err >&2; exit 7")
        #expect(r.stdoutText == "out\n")
        #expect(r.stderrText == "err\n")
        #expect(r.exitStatus == 7)
        #expect(r.exitSignal == nil)
        // The same session runs more commands.
        let r2 = try await s.exec("cat /proc/sys/kernel/osrelease")
        let local = try String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8)
        #expect(r2.stdoutText == local)
        #expect(r2.succeeded)
    }

    @Test func exitSignalIsReported() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let s = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d))
        let r = try await s.exec("kill -KILL $$")
        #expect(r.exitSignal == "KILL")
    }

    @Test func largeOutputOnBothStreamsDoesNotStall() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let s = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d))
        // 4 MiB on stdout and 4 MiB on stderr, interleaved.
        let r = try await s.exec("head -c 4194304 /dev/zero | tr '\\0' a & head -c 4194304 /dev/zero | tr '\\0' b >&2; wait",
                                 timeout: .seconds(60))
        let size = 4 * 1024 * 1024
        #expect(r.stdout.count == size)
        #expect(r.stderr.count == size)
        #expect(r.stdout.allSatisfy { $0 == UInt8(ascii: "a") })
        #expect(r.stderr.allSatisfy { $0 == UInt8(ascii: "b") })
    }

    @Test func commandTimeoutIsClassifiedAndTheHostReconnects() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let s = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d))
        let start = ContinuousClock.now
        do {
            _ = try await s.exec("sleep 30", timeout: .milliseconds(500))
            Issue.record("sleep 30 finished within 500 ms?")
        } catch let e as SSHError {
            #expect(e.code == .commandTimeout)
        }
        #expect(ContinuousClock.now - start < .seconds(3))
        // The abandoned session is closed; a new one works.
        #expect(!s.isAlive)
        let s2 = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d))
        #expect(try await s2.exec("echo still here").stdoutText == "still here\n")
    }

    @Test func isAliveDoesNotWaitForARunningCommand() async throws {
        // isAlive is read from actors (SSHHost.connect): it must not block a
        // cooperative thread until the session's queue is free.
        let d = try TestSSHD(); defer { d.cleanUp() }
        let s = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d))
        #expect(s.isAlive)
        let task = Task { try await s.exec("sleep 3", timeout: .seconds(20)) }
        try await Task.sleep(for: .milliseconds(500))
        let start = ContinuousClock.now
        let alive = s.isAlive
        let took = ContinuousClock.now - start
        #expect(alive)
        #expect(took < .milliseconds(200), "isAlive took \(took) while a command ran")
        #expect(try await task.value.succeeded)
        #expect(s.isAlive)
        await s.close()
        #expect(!s.isAlive)
    }

    @Test func cancellingTheTaskStopsTheCommand() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let s = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d))
        let start = ContinuousClock.now
        let task = Task { try await s.exec("sleep 30") }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let result = await task.result
        guard case .failure(let e as SSHError) = result else {
            Issue.record("expected a cancellation error, got \(result)")
            return
        }
        #expect(e.code == .cancelled)
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test func connectionLostMidCommandIsClassified() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let s = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d))
        // Kill the per-connection sshd process: the connection drops as in a reboot.
        let ppid = try await s.exec("ps -o ppid= -p $$").stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        do {
            _ = try await s.exec("sleep 0.2; kill -9 \(ppid); sleep 5", timeout: .seconds(10))
            Issue.record("expected the connection to drop")
        } catch let e as SSHError {
            #expect(e.code == .connectionLost)
        }
        #expect(!s.isAlive)
    }

    @Test(arguments: ["ed25519", "ecdsa", "rsa"])
    func authenticatesWithEachKeyType(type: String) async throws {
        // libssh2 1.10 signs RSA with ssh-rsa (SHA-1) only; OpenSSH 9 accepts that only when allowed.
        let d = try TestSSHD(extraConfig: type == "rsa" ? "PubkeyAcceptedAlgorithms +ssh-rsa" : ""); defer { d.cleanUp() }
        let key = [ "ed25519": d.ed25519Key, "ecdsa": d.ecdsaKey, "rsa": d.rsaKey ][type]!
        let s = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d, key: key))
        #expect(try await s.exec("echo ok").stdoutText == "ok\n")
    }

    @Test func authenticatesThroughSSHAgent() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let sock = d.dir + "/agent.sock"
        let agent = try Spawn.start("/usr/bin/ssh-agent", ["-D", "-a", sock])
        defer { kill(agent, SIGTERM); _ = Spawn.wait(agent) }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: sock) { usleep(20_000) }
        let (status, output) = try Spawn.run("/usr/bin/ssh-add", [d.ecdsaKey], environment: ["SSH_AUTH_SOCK": sock])
        #expect(status == 0, "\(output)")
        var opts = Self.options(d)
        opts.identityFiles = []
        opts.useAgent = true
        opts.agentSocket = sock
        let s = try await SSHSession.connect(to: Self.endpoint(d), options: opts)
        #expect(try await s.exec("echo agent").stdoutText == "agent\n")
    }

    @Test func rsaKeyAgainstModernSSHDExplainsWhy() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        do {
            _ = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d, key: d.rsaKey))
            Issue.record("expected OpenSSH to refuse ssh-rsa signatures")
        } catch let e as SSHError {
            #expect(e.code == .authFailed)
            #expect(e.message.contains("PubkeyAcceptedAlgorithms"))
        }
    }

    @Test func wrongKeyIsAuthFailed() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        do {
            _ = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d, key: d.strangerKey))
            Issue.record("a key that is not authorized was accepted")
        } catch let e as SSHError {
            #expect(e.code == .authFailed)
            #expect(e.message.contains("id_stranger"))
        }
    }

    @Test func unknownHostKeyIsRefusedUnderStrict() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let empty = d.dir + "/empty_known_hosts"
        FileManager.default.createFile(atPath: empty, contents: Data())
        do {
            _ = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d, knownHosts: empty))
            Issue.record("unknown host key accepted under strict")
        } catch let e as SSHError {
            #expect(e.code == .hostKeyUnknown)
            #expect(e.message.contains("ssh-ed25519"))
            // The fingerprint is the one ssh-keygen prints for the host key.
            let fp = try TestSSHD.run("/usr/bin/ssh-keygen", ["-l", "-f", d.dir + "/host_ed25519.pub"]).split(separator: " ")[1]
            #expect(e.message.contains(String(fp)))
        }
        #expect(try String(contentsOfFile: empty, encoding: .utf8).isEmpty)
    }

    @Test func acceptNewLearnsUnknownKeyThenStrictAccepts() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let learned = d.dir + "/learned_known_hosts"
        let s = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d, policy: .acceptNew, knownHosts: learned))
        await s.close()
        let text = try String(contentsOfFile: learned, encoding: .utf8)
        #expect(text.hasPrefix("[127.0.0.1]:\(d.port) ssh-ed25519 "))
        // OpenSSH agrees with what we wrote.
        let check = try TestSSHD.run("/usr/bin/ssh-keygen", ["-F", "[127.0.0.1]:\(d.port)", "-f", learned])
        #expect(check.contains("ssh-ed25519"))
        _ = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d, policy: .strict, knownHosts: learned))
    }

    @Test(arguments: [HostKeyPolicy.strict, .acceptNew])
    func changedHostKeyIsRefused(policy: HostKeyPolicy) async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        _ = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d, policy: policy))
        try d.restartWithNewHostKey()  // a man in the middle
        do {
            _ = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d, policy: policy))
            Issue.record("changed host key accepted under \(policy)")
        } catch let e as SSHError {
            #expect(e.code == .hostKeyMismatch)
            #expect(e.message.contains("CHANGED"))
        }
    }

    @Test func hashedKnownHostsEntriesAreHonoured() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        try TestSSHD.run("/usr/bin/ssh-keygen", ["-H", "-f", d.knownHostsPath])
        let text = try String(contentsOfFile: d.knownHostsPath, encoding: .utf8)
        #expect(text.hasPrefix("|1|"))
        _ = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d))
        try d.restartWithNewHostKey()
        await #expect(throws: SSHError.self) {
            _ = try await SSHSession.connect(to: Self.endpoint(d), options: Self.options(d))
        }
    }

    @Test func refusedPortIsClassified() async throws {
        let port = try TestSSHD.freePort()
        let opts = SSHConnectOptions(connectTimeout: .seconds(2), knownHostsPath: "/dev/null", identityFiles: [], useAgent: false)
        do {
            _ = try await SSHSession.connect(to: SSHEndpoint(name: "nobody", address: "127.0.0.1", port: port), options: opts)
            Issue.record("connected to a closed port")
        } catch let e as SSHError {
            #expect(e.code == .connectRefused)
            #expect(e.isTransient)
        }
    }

    @Test func sixtyFourSessionsAtOnce() async throws {
        let d = try TestSSHD(maxStartups: 200); defer { d.cleanUp() }
        let endpoint = Self.endpoint(d), opts = Self.options(d)
        let outputs = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<64 {
                group.addTask {
                    let s = try await SSHSession.connect(to: endpoint, options: opts)
                    return try await s.exec("echo \(i)").stdoutText
                }
            }
            var all: [String] = []
            for try await o in group { all.append(o) }
            return all
        }
        #expect(Set(outputs) == Set((0..<64).map { "\($0)\n" }))
    }
}

@Suite struct ShellQuoteTests {
    @Test func quotesHostileValues() async throws {
        #expect(shellQuote("web-01") == "web-01")
        #expect(shellQuote("") == "''")
        #expect(shellQuote("a b") == "'a b'")
        #expect(shellQuote("x; rm -rf /") == "'x; rm -rf /'")
        #expect(shellQuote("it's") == "'it'\\''s'")
        #expect(shellQuote("$(id)") == "'$(id)'")
        // Round trip through a real shell.
        for v in ["$(id)", "a'b\"c", "`x`", "line\nbreak", "*", "~root"] {
            let out = try TestSSHD.run("/bin/sh", ["-c", "printf %s " + shellQuote(v)])
            #expect(out == v)
        }
        // Random values (ASCII, quotes, controls, accents, combining marks, emoji, CRLF): the
        // same words as the Character-based definition, and a real shell gives each back.
        let alphabet: [String] = ["a", "Z", "0", "-", "_", ".", "/", "=", ":", ",", "+", "@", "%", "'", "\"", " ", "$", "`", "\\",
                                  "\n", "\r\n", "\t", "é", "e\u{301}", "😀", "ß", ";", "*", "~"]
        func reference(_ v: String) -> String {
            if !v.isEmpty, v.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0)) }) { return v }
            return "'" + v.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }
        var rng = SystemRandomNumberGenerator()
        for i in 0..<400 {
            let v = (0..<Int.random(in: 0...12, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }.joined()
            #expect(shellQuote(v) == reference(v), "\(v.debugDescription)")
            if i % 40 == 0 {
                #expect(try TestSSHD.run("/bin/sh", ["-c", "printf %s " + shellQuote(v)]) == v, "\(v.debugDescription)")
            }
        }
    }
}

@Suite struct SSHConfigTests {
    @Test func resolvesFirstMatchWins() {
        let c = SSHConfig.parse("""
        # comment
        Host web-* !web-99
            User deploy
            Port 2200
            IdentityFile ~/.ssh/fleet
        Host web-01
            HostName 10.0.0.1
            User other
        Host *
            User root
            Port 22
        """)
        let r = c.resolve(host: "web-01")
        #expect(r.user == "deploy")
        #expect(r.port == 2200)
        #expect(r.hostName == "10.0.0.1")
        #expect(r.identityFiles == [NSHomeDirectory() + "/.ssh/fleet"])
        let n = c.resolve(host: "web-99")
        #expect(n.user == "root")
        #expect(n.port == 22)
        #expect(SSHConfig.glob("db-?", "db-1"))
        #expect(!SSHConfig.glob("db-?", "db-10"))
    }

    @Test func proxyCommandsChainsIncludesAndMatchesAreNamedWithFileAndLine() {
        let c = SSHConfig.parse("""
        # line 1
        Host db-*
            ProxyJump admin@bastion.example.net:2222
        Host web-direct
            ProxyJump none
        Host web-* lb-*
            ProxyCommand ssh -W %h:%p jump
            User deploy
        Host mail-*
            Include ~/.ssh/mail.conf
        Host far-*
            ProxyJump outer.example.net,inner.example.net
        Host odd-*
            ProxyJump bastion:port
        Host deep-*
            ProxyJump hop-1
        Host hop-1
            ProxyJump hop-0
        """, path: "/home/u/.ssh/config")
        // One bastion in ProxyJump is honoured.
        #expect(c.unsupported(forHost: "db-1").isEmpty)
        let jump = c.proxyJump(forHost: "db-1")
        #expect(jump?.jump == JumpSpec(user: "admin", host: "bastion.example.net", port: 2222) && jump?.line == 3)
        // The first value wins, as in OpenSSH: 'none' there means a direct connection.
        #expect(c.unsupported(forHost: "web-direct").isEmpty)
        #expect(c.proxyJump(forHost: "web-direct") == nil)
        let web = c.unsupported(forHost: "web-2")
        #expect(web.map { "\($0.keyword):\($0.line)" } == ["ProxyCommand:7"])
        #expect(web.first?.file == "/home/u/.ssh/config")
        #expect(web.first?.message.contains("host 'web-2' is to be reached through ProxyCommand ssh -W %h:%p jump; rollctl runs no proxy commands") == true)
        #expect(c.proxyJump(forHost: "web-2") == nil)
        // A chain, a value rollctl cannot read, and a bastion with a proxy of its own: one level only.
        let far = c.unsupported(forHost: "far-1")
        #expect(far.map { "\($0.keyword):\($0.line)" } == ["ProxyJump:12"])
        #expect(far.first?.message.contains("a chain of 2 bastions; rollctl goes through one bastion only") == true, "\(far)")
        #expect(c.unsupported(forHost: "odd-1").first?.message.contains("port 'port' is not a number") == true)
        let deep = c.unsupported(forHost: "deep-1")
        #expect(deep.map { "\($0.keyword):\($0.line)" } == ["ProxyJump:18"], "\(deep)")
        #expect(deep.first?.message.contains("host 'deep-1' is to be reached through bastion 'hop-1', which is itself to be reached through ProxyJump hop-0") == true)
        // When the inventory says how a host is reached, its proxies do not matter.
        #expect(c.unsupported(forHost: "web-2", proxies: false).isEmpty)
        // An Include in a Host block that does not match cannot affect the host.
        #expect(c.unsupported(forHost: "app-1").isEmpty)
        #expect(c.unsupported(forHost: "mail-1").map { "\($0.keyword):\($0.line)" } == ["Include:10"])
        // A top-level Include applies to every host; a Match may apply to any.
        let top = SSHConfig.parse("Include conf.d/*\nHost a\n  User x\nMatch exec \"true\"\n  ProxyJump j\n", path: "cfg")
        #expect(top.unsupported(forHost: "zzz").map { "\($0.keyword):\($0.line)" } == ["Include:1", "Match:4"])
        // ProxyJump inside the Match block is skipped with it: the Match itself is the error.
        #expect(top.resolve(host: "a").user == "x")
        #expect(top.proxyJump(forHost: "a") == nil)
    }

    @Test(arguments: [
        ("bastion", JumpSpec(host: "bastion")),
        ("ops@bastion.example.net", JumpSpec(user: "ops", host: "bastion.example.net")),
        ("ops@10.0.0.1:2222", JumpSpec(user: "ops", host: "10.0.0.1", port: 2222)),
        ("ssh://ops@jump:22", JumpSpec(user: "ops", host: "jump", port: 22)),
        ("[2001:db8::1]:2222", JumpSpec(host: "2001:db8::1", port: 2222)),
        ("root@2001:db8::1", JumpSpec(user: "root", host: "2001:db8::1")),
        ("a@b@host", JumpSpec(user: "a@b", host: "host")),
    ])
    func jumpSpecsAreRead(text: String, spec: JumpSpec) throws {
        #expect(try JumpSpec.parse(text).get() == spec)
        #expect(try JumpSpec.parse(spec.description).get() == spec)
    }

    @Test(arguments: [
        ("a,b", "a chain of 2 bastions"), ("", "no bastion given"), ("@host", "an empty user"), ("host:0", "port '0'"),
        ("host:99999", "port '99999'"), ("[::1", "'[' without ']'"), ("user@", "no host name"), ("-oProxyCommand=x", "is not [user@]host[:port]"),
        ("host;reboot", "is not [user@]host[:port]"), ("us er@host", "is not [user@]host[:port]"),
    ])
    func badJumpSpecsAreRefused(text: String, problem: String) {
        guard case .failure(let e) = JumpSpec.parse(text) else {
            Issue.record("accepted '\(text)'")
            return
        }
        #expect(e.description.contains(problem), "\(text): \(e)")
    }
}
