import Foundation
import Testing
import SSHTesting

/// `rollctl fleet facts` / `fleet exec` run as a process against a real sshd.
@Suite("fleet commands", .serialized)
struct FleetCommandTests {
    static func local(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func factsJSONMatchesTheMachinesRealProc() throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let inv = try CLI.inventory(for: d)
        let r = try CLI.run(["fleet", "facts", "-i", inv, "--json"])
        #expect(r.status == 0, "\(r.output)")
        let hosts = r.json.filter { $0["type"] as? String == "host" }
        try #require(hosts.count == 1)
        let h = hosts[0]
        #expect(h["name"] as? String == "local-1")
        #expect(h["reachable"] as? Bool == true)
        #expect(h["release"] as? String == (try Self.local("/proc/sys/kernel/osrelease")))
        #expect(h["boot_id"] as? String == (try Self.local("/proc/sys/kernel/random/boot_id")))
        let meminfo = try Self.local("/proc/meminfo")
        let memTotalKiB = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }!
            .split(separator: " ", omittingEmptySubsequences: true)[1]
        #expect((h["mem_total_bytes"] as? NSNumber)?.uint64Value == UInt64(memTotalKiB)! * 1024)
        #expect(h["sunreclaim_bytes"] != nil)
        #expect(h["oom_kill"] != nil)
        let summary = r.json.first { $0["type"] as? String == "summary" }
        #expect(summary?["reachable"] as? Int == 1)
    }

    @Test func unreachableHostsAreListedWithTheReasonAndExit1() throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let closed = try TestSSHD.freePort()
        let inv = try CLI.inventory(for: d, extraHosts: "  - {name: gone-1, address: 127.0.0.1, port: \(closed)}\n")
        let r = try CLI.run(["fleet", "facts", "-i", inv])
        #expect(r.status == 1)
        #expect(r.output.contains("local-1"))
        #expect(r.output.contains("gone-1  [connect_refused]"))
        #expect(r.output.contains("2 hosts: 1 reachable, 1 unreachable"))
        let j = try CLI.run(["fleet", "facts", "-i", inv, "--json"])
        let gone = j.json.first { $0["name"] as? String == "gone-1" }
        #expect((gone?["error"] as? [String: Any])?["code"] as? String == "connect_refused")
    }

    @Test func unknownHostKeyIsRefusedByDefault() throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let inv = try CLI.inventory(for: d)
        try "".write(toFile: d.knownHostsPath, atomically: true, encoding: .utf8)
        let r = try CLI.run(["fleet", "facts", "-i", inv, "--json"])
        #expect(r.status == 1)
        #expect(r.output.contains("host_key_unknown"))
        #expect(r.output.contains("SHA256:"))
    }

    @Test func sunreclaimThresholdFlagsHosts() throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let inv = try CLI.inventory(for: d)
        // Any real machine has more than 1 KiB of unreclaimable slab.
        let r = try CLI.run(["fleet", "facts", "-i", inv, "--sunreclaim-warn", "1KiB"])
        #expect(r.status == 0)
        #expect(r.output.contains("1 host over the SUnreclaim warning"))
        let quiet = try CLI.run(["fleet", "facts", "-i", inv, "--sunreclaim-warn", "100%"])
        #expect(!quiet.output.contains("over the SUnreclaim warning"))
    }

    @Test func execReportsEachHostAndFailsIfAnyFails() throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let inv = try CLI.inventory(for: d)
        let ok = try CLI.run(["fleet", "exec", "-i", inv, "--", "echo hello; echo warn >&2"])
        #expect(ok.status == 0, "\(ok.output)")
        #expect(ok.output.contains("== local-1 (exit 0"))
        #expect(ok.output.contains("  hello"))
        #expect(ok.output.contains("! warn"))
        let bad = try CLI.run(["fleet", "exec", "-i", inv, "--json", "--", "exit 3"])
        #expect(bad.status == 1)
        #expect(bad.json.first?["exit_status"] as? Int == 3)
        let slow = try CLI.run(["fleet", "exec", "-i", inv, "--timeout", "1s", "--json", "--", "sleep 20"])
        #expect(slow.status == 1)
        #expect((slow.json.first?["error"] as? [String: Any])?["code"] as? String == "command_timeout")
    }

    @Test func badInputExits2AndNamesThePlace() throws {
        let dir = try TestSSHD.makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inv = dir + "/inv.yaml"
        try "hosts:\n  - name: web-1\n    adress: 10.0.0.1\n".write(toFile: inv, atomically: true, encoding: .utf8)
        let r = try CLI.run(["fleet", "facts", "-i", inv])
        #expect(r.status == 2)
        #expect(r.output.contains("inv.yaml:3:5: error: unknown key 'adress'"))
        #expect(r.output.contains("did you mean 'address'?"))
        #expect(try CLI.run(["fleet", "facts", "-i", dir + "/missing.yaml"]).status == 2)
        #expect(try CLI.run(["fleet", "facts", "-i", inv, "--parallel", "0"]).status == 2)
        #expect(try CLI.run(["fleet", "exec", "-i", inv]).status == 2)
        #expect(try CLI.run(["fleet", "frobnicate"]).status == 2)
    }

    @Test func aProxyCommandOrAChainOfBastionsInTheSSHConfigExits2BeforeAnyConnection() throws {
        let dir = try TestSSHD.makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A listener standing in for the host: any connection attempt lands in its backlog.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        #expect(listen(fd, 16) == 0)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        let inv = dir + "/inv.yaml"
        try "defaults: {connect_timeout: 2s}\nhosts:\n  - {name: db-1, address: 127.0.0.1, port: \(port)}\n"
            .write(toFile: inv, atomically: true, encoding: .utf8)
        let cfg = dir + "/ssh_config"
        try "Host db-*\n    ProxyCommand nc bastion.example.net 22\n".write(toFile: cfg, atomically: true, encoding: .utf8)
        for command in [["fleet", "facts"], ["fleet", "exec"]] {
            let r = try CLI.run(command + ["-i", inv, "--ssh-config", cfg] + (command[1] == "exec" ? ["--", "true"] : []))
            #expect(r.status == 2, "\(command): \(r.output)")
            #expect(r.output.contains("\(cfg):2: error: host 'db-1' is to be reached through ProxyCommand nc bastion.example.net 22; rollctl runs no proxy commands"), "\(r.output)")
        }
        try "Host db-*\n    ProxyJump outer.example.net,bastion.example.net\n".write(toFile: cfg, atomically: true, encoding: .utf8)
        let chain = try CLI.run(["fleet", "facts", "-i", inv, "--ssh-config", cfg])
        #expect(chain.status == 2, "\(chain.output)")
        #expect(chain.output.contains("\(cfg):2: error: host 'db-1' is to be reached through ProxyJump outer.example.net,bastion.example.net: a chain of 2 bastions"), "\(chain.output)")
        // Nobody knocked.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let c = accept(fd, nil, nil)
        #expect(c < 0, "rollctl connected to the host")
        if c >= 0 { close(c) }
    }

    @Test func helpExplainsTheCommands() throws {
        let r = try CLI.run(["fleet", "facts", "--help"])
        #expect(r.status == 0)
        #expect(r.output.contains("SUnreclaim"))
        #expect(r.output.contains("--inventory"))
    }
}
