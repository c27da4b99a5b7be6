import Foundation
import Testing
@testable import Basics
@testable import SSH
@testable import RolloutConfig
@testable import Engine

@Suite struct InventoryTests {
    @Test func parsesDefaultsHostsAndLabels() throws {
        let inv = try Inventory.parse(text: """
        defaults:
          user: root
          port: 2222
          identity: keys/client
          known_hosts: /etc/rollctl/known_hosts
          host_key_policy: accept-new
          connect_timeout: 3s
        hosts:
          - name: web-001
            address: 127.0.1.1
            labels: {rack: r1, cluster: c1}
          - name: web-002
            address: 127.0.1.2
            port: 22
            user: admin
        """, path: "/srv/fleet/inventory.yaml")
        #expect(inv.hosts.count == 2)
        #expect(inv.hosts[0].labels == ["rack": "r1", "cluster": "c1"])
        #expect(inv.hosts[0].line == 9)
        #expect(inv.defaults.identityFiles == ["/srv/fleet/keys/client"])
        #expect(inv.defaults.hostKeyPolicy == .acceptNew)
        #expect(inv.defaults.connectTimeout == .seconds(3))
        let (e1, o1) = inv.sshTarget(for: inv.hosts[0])
        #expect(e1.port == 2222 && e1.user == "root" && e1.address == "127.0.1.1")
        #expect(o1.knownHostsPath == "/etc/rollctl/known_hosts")
        let (e2, _) = inv.sshTarget(for: inv.hosts[1])
        #expect(e2.port == 22 && e2.user == "admin")
    }

    @Test func inventoryValuesBeatSSHConfig() throws {
        let inv = try Inventory.parse(text: """
        hosts:
          - {name: web-001, address: 10.0.0.1}
          - {name: db-001, address: 10.0.1.1, user: dba}
        """, path: "inv.yaml")
        let cfg = SSHConfig.parse("Host *\n  User ops\n  Port 2200\n  IdentityFile /keys/ops\n")
        let (e1, o1) = inv.sshTarget(for: inv.hosts[0], sshConfig: cfg)
        #expect(e1.user == "ops" && e1.port == 2200)
        #expect(o1.identityFiles == ["/keys/ops"])
        let (e2, _) = inv.sshTarget(for: inv.hosts[1], sshConfig: cfg)
        #expect(e2.user == "dba")
    }

    /// Each malformed inventory gives an error at the right place.
    @Test(arguments: [
        ("hosts:\n  - name: a\n    adress: 10.0.0.1\n", 3, 5, "unknown key 'adress'", "did you mean 'address'?"),
        ("hosts:\n  - name: a\n    address: 10.0.0.1\n    port: 70000\n", 4, 11, "between 1 and 65535", nil),
        ("hosts:\n  - name: \"a; rm -rf /\"\n    address: 10.0.0.1\n", 2, 11, "host name 'a; rm -rf /' is not valid", nil),
        ("hosts:\n  - name: a\n    address: \"$(reboot)\"\n", 3, 14, "is not an IPv4/IPv6 address or DNS name", nil),
        ("hosts:\n  - name: a\n    address: \"x\\ny\"\n", 3, 14, "is not an IPv4/IPv6 address", nil),
        ("hosts: [ {name: a, address: 1.2.3.4}\n", 2, 1, "YAML syntax", nil),
        ("defaults:\n  host_key_policy: acept-new\nhosts: [{name: a, address: 1.2.3.4}]\n", 2, 20, "host_key_policy must be one of", "did you mean 'accept-new'?"),
        ("hostz: []\n", 1, 1, "unknown key 'hostz'", "did you mean 'hosts'?"),
        ("hosts: 5\n", 1, 8, "hosts must be a list", nil),
        ("hosts:\n  - name: a\n    address: 10.0.0.1\n    labels: [r1]\n", 4, 13, "labels must be a mapping", nil),
        ("defaults:\n  connect_timeout: soon\nhosts: [{name: a, address: 1.2.3.4}]\n", 2, 20, "must be a duration", nil),
        ("hosts:\n  - address: 10.0.0.1\n", 2, 5, "a host needs a 'name'", nil),
        // Bastions (jump:).
        ("hosts:\n  - name: a\n    address: 10.0.0.1\n    jump: jmup-1\n  - name: jump-1\n    address: 10.0.0.9\n", 4, 11,
         "jump: 'jmup-1' is not a host of the inventory", "did you mean 'jump-1'?"),
        ("hosts:\n  - name: a\n    address: 10.0.0.1\n    jump: a\n", 4, 11, "host 'a' jumps through itself", nil),
        ("hosts:\n  - name: a\n    address: 10.0.0.1\n    jump: 10.0.0.1\n", 4, 11, "host 'a' jumps through itself", nil),
        ("hosts:\n  - name: a\n    address: 10.0.0.1\n    jump: b\n  - {name: b, address: 10.0.0.2, jump: c}\n  - {name: c, address: 10.0.0.3}\n", 4, 11,
         "host 'a' jumps through 'b', which itself jumps through 'c': rollctl goes through one bastion only", "give 'b' jump: none if rollctl's machine reaches it directly, or jump through 'c' straight to 'a'"),
        ("defaults:\n  jump: c\nhosts:\n  - name: a\n    address: 10.0.0.1\n    jump: b\n  - {name: b, address: 10.0.0.2}\n  - {name: c, address: 10.0.0.3}\n", 6, 11,
         "host 'a' jumps through 'b', which itself jumps through 'c' (defaults.jump)", nil),
        ("defaults:\n  jump: b\nhosts:\n  - {name: a, address: 10.0.0.1}\n  - name: b\n    address: 10.0.0.2\n    jump: c.example.net\n", 7, 11,
         "'b' is the default bastion (defaults.jump) but itself jumps through 'c.example.net'", nil),
        ("defaults:\n  jump: nosuch\nhosts: [{name: a, address: 10.0.0.1}]\n", 2, 9, "defaults.jump: 'nosuch' is not a host of the inventory", nil),
        ("hosts:\n  - name: a\n    address: 10.0.0.1\n    jump: j1.example.net,j2.example.net\n", 4, 11, "a chain of 2 bastions; rollctl goes through one bastion only", nil),
        ("hosts:\n  - name: a\n    address: 10.0.0.1\n    jump: \"root@j.example.net:99999\"\n", 4, 11, "port '99999' is not a number", nil),
        ("hosts:\n  - name: a\n    address: 10.0.0.1\n    jump: \"bad!@j.example.net\"\n", 4, 11, "user 'bad!' is not a valid user name", nil),
        ("hosts:\n  - name: a\n    address: 10.0.0.1\n    jump: ho_st.example.net\n", 4, 11, "jump: 'ho_st.example.net' is not an IPv4/IPv6 address or DNS name", nil),
        ("hosts:\n  - name: a\n    address: 10.0.0.1\n    jmp: b\n", 4, 5, "unknown key 'jmp'", "did you mean 'jump'?"),
        ("hosts:\n  - name: a\n    address: 10.0.0.1\n    jump: [b]\n", 4, 11, "jump must be a string", nil),
    ] as [(String, Int, Int, String, String?)])
    func malformedInventoriesPointAtThePlace(text: String, line: Int, column: Int, message: String, hint: String?) {
        do {
            _ = try Inventory.parse(text: text, path: "bad.yaml")
            Issue.record("accepted: \(text)")
        } catch let e as InputErrors {
            let first = e.errors[0]
            #expect(first.file == "bad.yaml")
            #expect(first.line == line)
            #expect(first.column == column)
            #expect(first.message.contains(message), "\(first)")
            if let hint { #expect(first.hint == hint) }
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func reportsAllProblemsAtOnce() {
        do {
            _ = try Inventory.parse(text: """
            hosts:
              - {name: a, address: 10.0.0.1, prt: 22}
              - {name: b, address: 10.0.0.2, port: -1}
              - {name: a, address: 10.0.0.3}
            """, path: "x.yaml")
            Issue.record("accepted")
        } catch let e as InputErrors {
            #expect(e.errors.count == 3, "\(e)")
            #expect(e.errors.contains { $0.message.contains("duplicate host name 'a'") })
        } catch { Issue.record("\(error)") }
    }

    @Test func jumpsByNameByAddressAndFromTheDefaults() throws {
        let inv = try Inventory.parse(text: """
        defaults:
          user: root
          port: 2222
          identity: keys/fleet
          known_hosts: /etc/rollctl/known_hosts
          host_key_policy: accept-new
          connect_timeout: 4s
          jump: jump-1
        hosts:
          - {name: jump-1, address: 203.0.113.5, port: 22, user: ops, identity: keys/jump}
          - {name: web-001, address: 10.1.0.1}
          - {name: web-002, address: 10.1.0.2, jump: none}
          - {name: db-001, address: 10.2.0.1, jump: "admin@bastion.example.net:2200"}
          - {name: db-002, address: 10.2.0.2, jump: deploy@jump-1}
          - {name: db-003, address: 10.1.0.1, jump: bastion.example.net}
        """, path: "/srv/fleet/inventory.yaml")
        func jump(_ name: String) -> SSHJump? { inv.jump(for: inv.host(named: name)!) }
        // The default bastion itself is reached directly; `none` overrides the default.
        #expect(jump("jump-1") == nil)
        #expect(jump("web-002") == nil)
        #expect(inv.sshTarget(for: inv.host(named: "web-002")!).1.jump == nil)
        // An inventory host as bastion: its own address, port, user and identity; the inventory's known_hosts and policy.
        let (e, o) = inv.sshTarget(for: inv.host(named: "web-001")!)
        #expect(e == SSHEndpoint(name: "web-001", address: "10.1.0.1", port: 2222, user: "root"))
        let j = try #require(o.jump)
        #expect(j.endpoint == SSHEndpoint(name: "jump-1", address: "203.0.113.5", port: 22, user: "ops"))
        #expect(j.options.identityFiles == ["/srv/fleet/keys/jump"])
        #expect(j.options.knownHostsPath == "/etc/rollctl/known_hosts" && j.options.hostKeyPolicy == .acceptNew)
        #expect(j.options.connectTimeout == .seconds(4) && j.options.jump == nil)
        #expect(j.description == "bastion jump-1 (203.0.113.5:22)")
        // user@host:port outside the inventory: the value, then the defaults.
        #expect(jump("db-001")?.endpoint == SSHEndpoint(name: "bastion.example.net", address: "bastion.example.net", port: 2200, user: "admin"))
        #expect(jump("db-001")?.options.identityFiles == ["/srv/fleet/keys/fleet"])
        #expect(jump("db-003")?.endpoint == SSHEndpoint(name: "bastion.example.net", address: "bastion.example.net", port: 2222, user: "root"))
        // A user of the value on an inventory host as bastion.
        #expect(jump("db-002")?.endpoint == SSHEndpoint(name: "jump-1", address: "203.0.113.5", port: 22, user: "deploy"))
        // Hosts behind different bastions may share an address (web-001 and db-003); their locks differ too.
        #expect(Orchestrator.lockKey(inv.host(named: "web-001")!, inv) == "10.1.0.1:2222 via jump-1")
        #expect(Orchestrator.lockKey(inv.host(named: "db-003")!, inv) == "10.1.0.1:2222 via bastion.example.net")
        #expect(Orchestrator.lockKey(inv.host(named: "web-002")!, inv) == "10.1.0.2:2222")
        // ...but not the same bastion.
        #expect(throws: InputErrors.self) {
            try Inventory.parse(text: "hosts:\n  - {name: a, address: 10.0.0.1, jump: j.example.net}\n  - {name: b, address: 10.0.0.1, jump: j.example.net}\n", path: "x.yaml")
        }
    }

    @Test func sshConfigProxyJumpIsHonouredAndTheInventoryWins() throws {
        let inv = try Inventory.parse(text: """
        defaults: {identity: /keys/fleet}
        hosts:
          - {name: web-1, address: 10.0.0.1}
          - {name: web-2, address: 10.0.0.2, jump: none}
          - {name: db-1, address: 10.0.1.1, jump: "ops@203.0.113.9"}
          - {name: db-2, address: 10.0.1.2}
          - {name: app-1, address: 10.0.2.1, jump: jump-1}
          - {name: jump-1, address: 10.0.9.1}
        """, path: "inv.yaml")
        let cfg = SSHConfig.parse("""
        Host bastion
            HostName 198.51.100.7
            User jumper
            Port 2022
            IdentityFile /keys/jumper
        Host web-*
            ProxyJump bastion
        Host db-*
            ProxyCommand nc gateway 22
        """, path: "/root/.ssh/config")
        let h = { (n: String) in inv.host(named: n)! }
        // ProxyJump: the bastion's entry gives its address, user, port and identity.
        let j = try #require(inv.jump(for: h("web-1"), sshConfig: cfg))
        #expect(j.endpoint == SSHEndpoint(name: "bastion", address: "198.51.100.7", port: 2022, user: "jumper"))
        #expect(j.options.identityFiles == ["/keys/jumper"])
        // jump: none, and any jump of the inventory, win over ssh_config (ProxyCommand included).
        #expect(inv.jump(for: h("web-2"), sshConfig: cfg) == nil)
        #expect(inv.jump(for: h("db-1"), sshConfig: cfg)?.endpoint.address == "203.0.113.9")
        let problems = inv.sshConfigProblems(cfg, hosts: inv.hosts)
        #expect(problems.map(\.location) == ["/root/.ssh/config:9"], "\(problems)")
        #expect(problems.first?.message.contains("host 'db-2' is to be reached through ProxyCommand") == true)
        // A bastion that ssh_config would reach through another: one level only, at the bastion's line.
        let chained = SSHConfig.parse("Host web-*\n  ProxyJump bastion\nHost bastion jump-1\n  ProxyJump outer\n", path: "/root/.ssh/config")
        let c = inv.sshConfigProblems(chained, hosts: [h("web-1"), h("app-1")])
        #expect(c.map(\.location) == ["/root/.ssh/config:4"], "\(c)")
        #expect(c.first?.message.contains("host 'web-1' (and app-1) is to be reached through bastion 'bastion', which is itself to be reached through ProxyJump outer") == true,
                "\(c.first?.message ?? "")")
        // ...unless the inventory reaches the bastion directly.
        var direct = inv
        direct.hosts[direct.hosts.firstIndex { $0.name == "jump-1" }!].jump = InventoryJump.direct
        #expect(direct.sshConfigProblems(chained, hosts: [h("app-1")]).isEmpty)
        // `Host *` with ProxyJump applies to the bastion too: it is reached directly (no chain, no loop).
        let star = SSHConfig.parse("Host *\n  ProxyJump jump-1\n", path: "/root/.ssh/config")
        #expect(inv.jump(for: h("jump-1"), sshConfig: star) == nil)
        #expect(inv.jump(for: h("db-2"), sshConfig: star)?.endpoint.address == "10.0.9.1")
        #expect(inv.sshConfigProblems(star, hosts: [h("jump-1"), h("db-2"), h("web-1"), h("app-1")]).isEmpty)
        // But a bastion outside the inventory would be reached through jump-1 there: one level only.
        #expect(inv.sshConfigProblems(star, hosts: [h("db-1")]).first?.message
                .contains("host 'db-1' is to be reached through bastion '203.0.113.9', which is itself to be reached through ProxyJump jump-1") == true)
        // ssh_config: false: ProxyJump is not read either.
        var off = inv
        off.defaults.useSSHConfig = false
        #expect(off.jump(for: h("web-1"), sshConfig: cfg) == nil)
    }

    @Test func sshConfigProxyCommandsAreInputErrorsPerConfigLine() throws {
        let inv = try Inventory.parse(text: "hosts:\n" + (1...8).map { "  - {name: db-\($0), address: 10.0.0.\($0)}\n" }.joined()
                                      + "  - {name: web-1, address: 10.0.1.1}\n", path: "inv.yaml")
        let cfg = SSHConfig.parse("Host db-*\n  ProxyCommand nc bastion 22\n", path: "/root/.ssh/config")
        let errors = inv.sshConfigProblems(cfg, hosts: inv.hosts)
        #expect(errors.count == 1)
        let e = try #require(errors.first)
        #expect(e.location == "/root/.ssh/config:2")
        #expect(e.message.contains("host 'db-1' (and db-2, db-3, db-4, db-5, db-6 and 2 more)"), "\(e.message)")
        #expect(e.message.contains("rollctl runs no proxy commands"))
        #expect(inv.sshConfigProblems(cfg, hosts: inv.hosts.filter { $0.name == "web-1" }).isEmpty)
        #expect(throws: InputErrors.self) { try inv.checkSSHConfig(cfg, hosts: inv.hosts) }
        // ssh_config: false: the file is not read for these hosts, so nothing in it matters.
        let off = try Inventory.parse(text: "defaults: {ssh_config: false}\nhosts: [{name: db-1, address: 10.0.0.1}]\n", path: "inv.yaml")
        #expect(off.sshConfigProblems(cfg, hosts: off.hosts).isEmpty)
    }

    @Test func duplicateHostsArePlacedAtLineAndColumn() throws {
        let e = try #require(throws: InputErrors.self) {
            try Inventory.parse(text: """
            hosts:
              - {name: a, address: 10.0.0.1}
              - name: b
                address: 10.0.0.2
              -   name: a
                  address: 10.0.0.3
              - {name: c,   address: 10.0.0.2}
            """, path: "x.yaml")
        }
        let dup = try #require(e.errors.first { $0.message.contains("duplicate host name 'a'") })
        #expect(dup.file == "x.yaml" && dup.line == 5 && dup.column == 13, "\(dup.location)")
        #expect(dup.message.contains("first at line 2, column 12"), "\(dup.message)")
        #expect(dup.description.hasPrefix("x.yaml:5:13: "), "\(dup.description)")
        let same = try #require(e.errors.first { $0.message.contains("same address and port 10.0.0.2:22") })
        #expect(same.line == 7 && same.column == 26, "\(same.location)")
    }

    @Test func refusesBinaryAndHugeAndDeepInput() throws {
        let dir = NSTemporaryDirectory() + "rollctl-inv-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(Data, String)] = [
            (Data([0x68, 0x6f, 0x00, 0xff, 0xfe]), "binary data"),
            (Data(repeating: UInt8(ascii: "#"), count: 10 * 1024 * 1024), "rollctl reads at most"),
            (Data(("hosts: " + String(repeating: "[", count: 5000)).utf8), "nesting deeper than"),
            (Data([0xc3, 0x28, 0x0a]), "not valid UTF-8"),
            (Data(), "empty"),
        ]
        for (i, (data, message)) in cases.enumerated() {
            let path = dir + "/inv\(i).yaml"
            FileManager.default.createFile(atPath: path, contents: data)
            #expect(throws: InputErrors.self) { _ = try Inventory.load(path: path) }
            do { _ = try Inventory.load(path: path) } catch let e as InputErrors {
                #expect(e.errors[0].message.contains(message), "\(e)")
            } catch {}
        }
        do { _ = try Inventory.load(path: dir + "/missing.yaml") } catch let e as InputErrors {
            #expect(e.errors[0].message == "no such file")
        }
    }

    @Test func quantities() {
        #expect(Quantity.bytes("512MiB") == 512 * 1024 * 1024)
        #expect(Quantity.bytes("2GiB") == 2 * 1024 * 1024 * 1024)
        #expect(Quantity.bytes("1.5GB") == 1_500_000_000)
        #expect(Quantity.bytes("12") == 12)
        #expect(Quantity.bytes("-1MiB") == nil)
        #expect(Quantity.bytes("lots") == nil)
        #expect(Quantity.ratio("99.5%") == 0.995)
        #expect(Quantity.ratio("150%") == nil)
        #expect(DurationText.parse("1h30m") == .seconds(5400))
        #expect(DurationText.parse("500ms") == .milliseconds(500))
        #expect(DurationText.parse("10") == nil)
        #expect(DurationText.parse("-5s") == nil)
        #expect(SUnreclaimThreshold.parse("10%") == .share(0.1))
        #expect(SUnreclaimThreshold.parse("2GiB") == .bytes(2 << 30))
    }
}
