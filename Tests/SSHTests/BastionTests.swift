import Foundation
import Testing
import SSHTesting
@testable import SSH
#if canImport(Glibc)
import Glibc
#endif

/// A target reachable only through a bastion (`BastionLab`: two network
/// namespaces, the direct path rejected by the bastion's firewall), both real
/// OpenSSH sshds.
@Suite("SSH through a bastion (network namespaces)", .serialized)
struct BastionTests {
    static func jump(_ lab: BastionLab, knownHosts: String? = nil, policy: HostKeyPolicy = .strict) -> SSHJump {
        let b = lab.bastion!
        return SSHJump(endpoint: SSHEndpoint(name: "jump-1", address: b.address, port: b.port, user: b.user),
                       options: SSHConnectOptions(connectTimeout: .seconds(5), knownHostsPath: knownHosts ?? b.knownHostsPath,
                                                  hostKeyPolicy: policy, identityFiles: [b.ed25519Key], useAgent: false))
    }

    static func target(_ lab: BastionLab) -> SSHEndpoint {
        SSHEndpoint(name: "web-003", address: lab.target.address, port: lab.target.port, user: lab.target.user)
    }

    static func options(_ lab: BastionLab, jump: SSHJump?, knownHosts: String? = nil, timeout: Duration = .seconds(5)) -> SSHConnectOptions {
        // The target's own key and known_hosts: nothing of the bastion's is good for it.
        SSHConnectOptions(connectTimeout: timeout, knownHostsPath: knownHosts ?? lab.target.knownHostsPath, hostKeyPolicy: .strict,
                          identityFiles: [lab.target.ecdsaKey], useAgent: false, jump: jump)
    }

    /// What a descriptor is now (device and inode), nil when it is closed: a number
    /// reused by another test running at the same time is a different file.
    static func identity(_ fd: Int32) -> (UInt64, UInt64)? {
        var st = stat()
        return fstat(fd, &st) == 0 ? (UInt64(st.st_dev), UInt64(st.st_ino)) : nil
    }

    /// Waits up to 3 s for the bastion's sshd to have `n` connections.
    static func waitForBastionConnections(_ lab: BastionLab, _ n: Int) throws -> Int {
        var seen = -1
        for _ in 0..<60 {
            seen = try lab.bastionConnections()
            if seen == n { return seen }
            usleep(50_000)
        }
        return seen
    }

    @Test func directPathIsBlockedAndTheJumpRunsCommandsOnTheTarget() async throws {
        let lab = try BastionLab(); defer { lab.cleanUp() }
        // The direct path is refused (the bastion's firewall), classified.
        do {
            _ = try await SSHSession.connect(to: Self.target(lab), options: Self.options(lab, jump: nil, timeout: .seconds(3)))
            Issue.record("the target was reachable directly")
        } catch let e as SSHError {
            #expect(e.code == .connectRefused, "\(e)")
        }

        let s = try await SSHSession.connect(to: Self.target(lab), options: Self.options(lab, jump: Self.jump(lab)))
        // sshd on the target says who connected to what: the bastion's inner address, to the target's.
        let r = try await s.exec("echo $SSH_CONNECTION")
        let fields = r.stdoutText.split(separator: " ").map(String.init)
        #expect(fields.count == 4 && fields[0] == lab.bastionInnerAddress && fields[2] == lab.targetAddress && fields[3].hasPrefix("22"),
                "SSH_CONNECTION on the target: \(r.stdoutText)")
        #expect(r.succeeded)
        #expect(try Self.waitForBastionConnections(lab, 1) == 1)

        // Much output on both streams at once, through the pump (its buffers, the channel's window).
        let big = try await s.exec("head -c 4194304 /dev/zero | tr '\\0' a & head -c 4194304 /dev/zero | tr '\\0' b >&2; wait",
                                   timeout: .seconds(60))
        #expect(big.stdout.count == 4 * 1024 * 1024 && big.stdout.allSatisfy { $0 == UInt8(ascii: "a") })
        #expect(big.stderr.count == 4 * 1024 * 1024 && big.stderr.allSatisfy { $0 == UInt8(ascii: "b") })
        // And the other way: a long command line (one SSH packet of 30 kB; libssh2 sends at most 35 000 bytes in one).
        let arg = String(repeating: "x", count: 30_000)
        #expect(try await s.exec("printf %s \(arg) | wc -c").stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "30000")
        #expect(try await s.exec("exit 3").exitStatus == 3)

        // Closing the session ends the tunnel and the bastion's session: no thread, socket or connection left.
        let tunnel = try #require(s.tunnel)
        let fds = [s.fd, tunnel.pumpFD, tunnel.bastionFD]
        let before = fds.map(Self.identity)
        #expect(before.allSatisfy { $0 != nil })
        await s.close()
        #expect(tunnel.hasEnded)
        #expect(!s.isAlive)
        #expect(try Self.waitForBastionConnections(lab, 0) == 0)
        for (fd, was) in zip(fds, before) {
            let now = Self.identity(fd)
            #expect(now == nil || now! != was!, "descriptor \(fd) still open")
        }
    }

    @Test func theBastionsHostKeyIsVerified() async throws {
        let lab = try BastionLab(); defer { lab.cleanUp() }
        // The target's key where the bastion's should be: a changed key for the bastion.
        let wrong = lab.bastion.dir + "/wrong_known_hosts"
        let targetKey = try String(contentsOfFile: lab.target.dir + "/host_ed25519.pub", encoding: .utf8).split(separator: " ")
        try "\(lab.bastion.address) \(targetKey[0]) \(targetKey[1])\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        do {
            _ = try await SSHSession.connect(to: Self.target(lab), options: Self.options(lab, jump: Self.jump(lab, knownHosts: wrong)))
            Issue.record("a bastion with a changed host key was accepted")
        } catch let e as SSHError {
            #expect(e.code == .hostKeyMismatch)
            #expect(e.host == "web-003")
            #expect(e.message.hasPrefix("bastion jump-1 (\(lab.bastionAddress):22): host key for \(lab.bastionAddress):22 has CHANGED"), "\(e)")
        }
        // Unknown to known_hosts: refused under strict, naming the bastion.
        let empty = lab.bastion.dir + "/empty_known_hosts"
        FileManager.default.createFile(atPath: empty, contents: Data())
        do {
            _ = try await SSHSession.connect(to: Self.target(lab), options: Self.options(lab, jump: Self.jump(lab, knownHosts: empty)))
            Issue.record("a bastion with an unknown host key was accepted")
        } catch let e as SSHError {
            #expect(e.code == .hostKeyUnknown)
            #expect(e.message.hasPrefix("bastion jump-1 (\(lab.bastionAddress):22): "), "\(e)")
        }
        // accept-new learns the bastion's key under the bastion's address.
        let learned = lab.bastion.dir + "/learned_known_hosts"
        let s = try await SSHSession.connect(to: Self.target(lab), options: Self.options(lab, jump: Self.jump(lab, knownHosts: learned, policy: .acceptNew)))
        await s.close()
        #expect(try String(contentsOfFile: learned, encoding: .utf8) == lab.bastion.knownHostsLine())
        #expect(try Self.waitForBastionConnections(lab, 0) == 0)
    }

    @Test func theTargetsHostKeyIsVerifiedUnderItsOwnAddress() async throws {
        let lab = try BastionLab(); defer { lab.cleanUp() }
        // The bastion's key for the target's address: a changed key for the target.
        let wrong = lab.target.dir + "/wrong_known_hosts"
        let bastionKey = try String(contentsOfFile: lab.bastion.dir + "/host_ed25519.pub", encoding: .utf8).split(separator: " ")
        try "\(lab.target.address) \(bastionKey[0]) \(bastionKey[1])\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        do {
            _ = try await SSHSession.connect(to: Self.target(lab), options: Self.options(lab, jump: Self.jump(lab), knownHosts: wrong))
            Issue.record("a target with a changed host key was accepted")
        } catch let e as SSHError {
            #expect(e.code == .hostKeyMismatch)
            #expect(e.host == "web-003")
            #expect(e.message.hasPrefix("through bastion jump-1: host key for \(lab.targetAddress):22 has CHANGED"), "\(e)")
        }
        // known_hosts that knows only the bastion: the target's key is not known (it is
        // looked up under the target's address, never the bastion's).
        do {
            _ = try await SSHSession.connect(to: Self.target(lab), options: Self.options(lab, jump: Self.jump(lab), knownHosts: lab.bastion.knownHostsPath))
            Issue.record("the target was accepted with the bastion's known_hosts")
        } catch let e as SSHError {
            #expect(e.code == .hostKeyUnknown)
            #expect(e.message.contains("host key for \(lab.targetAddress):22 is not known"), "\(e)")
        }
        // Each failure closed its tunnel and bastion session.
        #expect(try Self.waitForBastionConnections(lab, 0) == 0)
    }

    @Test func aTargetDownBehindTheBastionIsTransientAndComesBack() async throws {
        let lab = try BastionLab(); defer { lab.cleanUp() }
        lab.target.stop()
        do {
            _ = try await SSHSession.connect(to: Self.target(lab), options: Self.options(lab, jump: Self.jump(lab)))
            Issue.record("connected to a stopped sshd")
        } catch let e as SSHError {
            #expect(e.code == .connectRefused)
            #expect(e.isTransient, "a host rebooting behind a bastion must be waited for")
            #expect(e.message.hasPrefix("through bastion jump-1: web-003 (\(lab.targetAddress):22) refused the channel:"), "\(e)")
        }
        #expect(try Self.waitForBastionConnections(lab, 0) == 0)
        try lab.target.start()
        let s = try await SSHSession.connect(to: Self.target(lab), options: Self.options(lab, jump: Self.jump(lab)))
        #expect(try await s.exec("echo back").stdoutText == "back\n")
    }

    @Test func theTargetDroppingTheConnectionMidCommandIsConnectionLost() async throws {
        let lab = try BastionLab(); defer { lab.cleanUp() }
        let s = try await SSHSession.connect(to: Self.target(lab), options: Self.options(lab, jump: Self.jump(lab)))
        let tunnel = try #require(s.tunnel)
        let ppid = try await s.exec("ps -o ppid= -p $$").stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        let start = ContinuousClock.now
        do {
            _ = try await s.exec("sleep 0.2; kill -9 \(ppid); sleep 5", timeout: .seconds(10))
            Issue.record("expected the connection to drop")
        } catch let e as SSHError {
            #expect(e.code == .connectionLost, "\(e)")
        }
        #expect(ContinuousClock.now - start < .seconds(4))
        #expect(!s.isAlive)
        // The pump ended on its own (channel EOF) and closed the bastion's session.
        for _ in 0..<60 where !tunnel.hasEnded { usleep(50_000) }
        #expect(tunnel.hasEnded)
        #expect(try Self.waitForBastionConnections(lab, 0) == 0)
    }

    @Test func theBastionGoingAwayWhileIdleEndsTheSession() async throws {
        let lab = try BastionLab(); defer { lab.cleanUp() }
        let s = try await SSHSession.connect(to: Self.target(lab), options: Self.options(lab, jump: Self.jump(lab)))
        #expect(try await s.exec("true").succeeded)
        #expect(s.isAlive)
        // Kill the bastion's sshd process that serves this connection: its TCP connection closes.
        let ss = try TestSSHD.run("/usr/sbin/ip", ["netns", "exec", lab.bastionNS, "ss", "-Htnp", "state", "established", "( sport = :22 )"])
        let pids = ss.split(separator: "pid=").dropFirst().compactMap { Int32($0.prefix { $0.isNumber }) }
        try #require(!pids.isEmpty, "\(ss)")
        for p in Set(pids) { kill(p, SIGKILL) }
        // SSHHost asks isAlive before each command: it must turn false without a command.
        var alive = true
        for _ in 0..<40 where alive { usleep(50_000); alive = s.isAlive }
        #expect(!alive, "the session still counts as alive after its bastion went away")
        do {
            _ = try await s.exec("true", timeout: .seconds(5))
            Issue.record("a command ran through a dead bastion")
        } catch let e as SSHError {
            #expect(e.code == .connectionLost || e.code == .sessionClosed, "\(e)")
        }
    }

    @Test func cancellingACommandThroughTheBastion() async throws {
        let lab = try BastionLab(); defer { lab.cleanUp() }
        let s = try await SSHSession.connect(to: Self.target(lab), options: Self.options(lab, jump: Self.jump(lab)))
        let start = ContinuousClock.now
        let task = Task { try await s.exec("sleep 30") }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        guard case .failure(let e as SSHError) = await task.result else {
            Issue.record("expected a cancellation error")
            return
        }
        #expect(e.code == .cancelled)
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(try Self.waitForBastionConnections(lab, 0) == 0)
    }

    @Test func manyHostsThroughOneBastionAtOnce() async throws {
        // sshd drops unauthenticated connections beyond MaxStartups (here 10:30:20, about
        // OpenSSH's default 10:30:100): logins to one bastion are limited to 6 at once
        // (and one dropped before its banner is tried again).
        let lab = try BastionLab(bastionMaxStartups: 10); defer { lab.cleanUp() }
        let endpoint = Self.target(lab), options = Self.options(lab, jump: Self.jump(lab), timeout: .seconds(20))
        let outputs = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<40 {
                group.addTask {
                    let s = try await SSHSession.connect(to: endpoint, options: options)
                    let out = try await s.exec("echo \(i)").stdoutText
                    await s.close()
                    return out
                }
            }
            var all: [String] = []
            for try await o in group { all.append(o) }
            return all
        }
        #expect(Set(outputs) == Set((0..<40).map { "\($0)\n" }))
        // Not by luck of the retries: sshd dropped none.
        let log = try String(contentsOfFile: lab.bastion.logPath, encoding: .utf8)
        #expect(!log.contains("past MaxStartups") && !log.contains("MaxStartups throttling"), "sshd dropped logins")
        let slots = await BastionLogins.shared.counts("\(lab.bastionAddress):22")
        #expect(slots.running == 0 && slots.waiting == 0)
        #expect(try Self.waitForBastionConnections(lab, 0) == 0)
    }

    @Test func aChainOfBastionsIsRefused() async throws {
        let inner = SSHJump(endpoint: SSHEndpoint(name: "jump-2", address: "127.0.0.1", port: 1),
                            options: SSHConnectOptions(knownHostsPath: "/dev/null", useAgent: false))
        let outer = SSHJump(endpoint: SSHEndpoint(name: "jump-1", address: "127.0.0.1", port: 1),
                            options: SSHConnectOptions(knownHostsPath: "/dev/null", useAgent: false, jump: inner))
        do {
            _ = try await SSHSession.connect(to: SSHEndpoint(name: "web-003", address: "127.0.0.1", port: 1),
                                             options: SSHConnectOptions(knownHostsPath: "/dev/null", useAgent: false, jump: outer))
            Issue.record("a chain of bastions was accepted")
        } catch let e as SSHError {
            #expect(e.message.contains("one bastion only"), "\(e)")
            #expect(e.message.contains("jump-2"))
        }
    }
}
