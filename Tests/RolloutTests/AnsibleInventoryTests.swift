import Foundation
import Testing
@testable import RolloutConfig

/// Ansible inventories, written the way Ansible's documentation writes them (tests/ansible/).
@Suite struct AnsibleInventoryTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/ansible"

    func byName(_ inv: Inventory) -> [String: InventoryHost] { Dictionary(uniqueKeysWithValues: inv.hosts.map { ($0.name, $0) }) }

    @Test(arguments: ["hosts.ini", "hosts.yml"])
    func theDocumentationsInventoryReadsTheSameInBothForms(_ file: String) throws {
        let inv = try Inventory.load(path: Self.folder + "/" + file)
        let h = byName(inv)
        #expect(inv.hosts.map(\.name) == ["mail.example.com", "foo.example.com", "bar.example.com", "one.example.com", "two.example.com",
                                          "three.example.com", "host1", "host2", "www01.raleigh.example.com", "www02.raleigh.example.com",
                                          "www03.raleigh.example.com"])
        // Connection values.
        #expect(h["bar.example.com"]?.address == "192.0.2.12" && h["bar.example.com"]?.port == 2222)
        #expect(h["foo.example.com"]?.address == "foo.example.com" && h["foo.example.com"]?.port == nil)
        #expect(h["three.example.com"]?.user == "dbadmin")
        #expect(h["three.example.com"]?.identityFiles == [Self.folder + "/keys/db_ed25519"])
        // Groups (children included) as the `group` label; variables as labels, the nearer winning.
        #expect(h["mail.example.com"]?.labels["group"] == nil)
        #expect(h["foo.example.com"]?.labels == ["group": "webservers", "http_port": "80"])
        #expect(h["bar.example.com"]?.labels["http_port"] == "8080")
        #expect(h["host1"]?.labels["group"] == "southeast,atlanta" && h["host1"]?.labels["halon_system_timeout"] == "45")
        #expect(h["www02.raleigh.example.com"]?.labels["group"] == "southeast,raleigh")
        #expect(h["www02.raleigh.example.com"]?.labels["halon_system_timeout"] == "30")
        #expect(h["host2"]?.labels["ntp_server"] == "ntp.southeast.example.com")
        #expect(h["host2"]?.labels.keys.contains("ansible_host") == false)
        // A plan selects a group by the label, children's hosts included.
        let plan = try PlanLoader.parse(text: "name: p\nkernel: {release: 6.1.0-19-hosting}\ninventory: x\nselect: {labels: {group: southeast}}\n", path: "p.yaml")
        #expect(PlanLoader.selectedHosts(plan, inventory: inv).map(\.name) == ["host1", "host2", "www01.raleigh.example.com",
                                                                              "www02.raleigh.example.com", "www03.raleigh.example.com"])
    }

    func errors(_ text: String, name: String = "inv.ini", executable: Bool = false) throws -> [String] {
        let dir = NSTemporaryDirectory() + "rollctl-ansible-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        if executable { chmod(path, 0o755) }
        do { _ = try Inventory.load(path: path); return [] } catch let e as InputErrors {
            return e.errors.map { "\($0.line ?? 0):\($0.column ?? 0) \($0.message)" }
        }
    }

    @Test func whatRollctlCannotHonourIsAClearError() throws {
        #expect(try errors("#!/usr/bin/env python3\nprint('{}')\n", name: "inventory.py", executable: true).first?.contains("dynamic inventory script") == true)
        #expect(try errors("plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n", name: "aws_ec2.yml")
                == ["1:1 an inventory plugin configuration ('plugin:') is dynamic; rollctl reads static inventories only"])
        #expect(try errors("[web]\nweb1 ansible_host={{ lookup('env', 'WEB1') }}\n").first?.contains("uses a Jinja template") == true)
        #expect(try errors("all:\n  vars:\n    x: \"{{ y }}\"\n  hosts:\n    a1:\n", name: "i.yml") == ["3:8 x uses a Jinja template ('{{ y }}'); rollctl does not evaluate templates"])
        #expect(try errors("[web\nweb1\n") == ["1:1 a section header needs its closing ']'"])
        #expect(try errors("[web:hostvars]\nweb1\n") == ["1:6 [web:hostvars] is not a section Ansible knows: use [web], [web:vars] or [web:children]"])
        #expect(try errors("[web:children]\nmissing\n[web]\nw1\n") == ["2:1 child group 'missing' of 'web' is never defined"])
        #expect(try errors("[web]\nw[1:x]\n").first?.contains("is not one rollctl can expand") == true)
        #expect(try errors("[web]\nw1 ansible_port=99999\n") == ["2:1 ansible_port '99999' of w1 is not a port"])
        #expect(try errors("[web]\nw1 ansible_host=192.0.2.1\nw2 ansible_host=192.0.2.1\n") == ["3:1 hosts 'w1' and 'w2' have the same address and port 192.0.2.1:22"])
        #expect(try errors("[web]\nw1 novalue\n") == ["2:4 'novalue' is not key=value"])
        #expect(try errors("# nothing\n[web]\n") == ["1:1 the Ansible inventory lists no hosts"])
        #expect(try errors("[a:children]\nb\n[b:children]\na\n[a]\nh1\n") == ["1:1 group 'a' is its own ancestor through children"])
        // ansible_ssh_common_args: a ProxyJump is honoured (below); any other ssh option is refused, not ignored.
        #expect(try errors("[web]\nw1 ansible_ssh_common_args='-o StrictHostKeyChecking=no'\n")
                == ["2:1 ansible_ssh_common_args of w1: ssh option 'StrictHostKeyChecking=no' is not passed by rollctl: set it in ~/.ssh/config (rollctl reads it) or use the inventory's own keys"])
        #expect(try errors("[web]\nw1 ansible_ssh_common_args='-o ProxyJump=a,b'\n").first?.contains("ansible_ssh_common_args of w1: ProxyJump 'a,b'") == true)
        // rollctl's own YAML is still rollctl's.
        #expect(try errors("hosts:\n  - {name: a, address: 192.0.2.1}\n", name: "inventory.yaml").isEmpty)
    }

    @Test func rangesExpandLikeAnsibles() throws {
        let dir = NSTemporaryDirectory() + "rollctl-ansible-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "[web]\nweb[08:11].example.com\ndb-[a:c]\nn[0:6:3]\n".write(toFile: dir + "/h.ini", atomically: true, encoding: .utf8)
        #expect(try Inventory.load(path: dir + "/h.ini").hosts.map(\.name)
                == ["web08.example.com", "web09.example.com", "web10.example.com", "web11.example.com", "db-a", "db-b", "db-c", "n0", "n3", "n6"])
    }

    @Test func aProxyJumpInTheSSHArgsIsTheHostsBastion() throws {
        let dir = NSTemporaryDirectory() + "rollctl-ansible-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
        [bastions]
        jump1 ansible_host=192.0.2.1

        [web]
        w1 ansible_host=10.0.0.1
        w2 ansible_host=10.0.0.2 ansible_ssh_extra_args="-J admin@gw.example.net:2222"

        [web:vars]
        ansible_ssh_common_args='-o ProxyJump=jump1'
        """.write(toFile: dir + "/h.ini", atomically: true, encoding: .utf8)
        let h = byName(try Inventory.load(path: dir + "/h.ini"))
        #expect(h["jump1"]?.jump == nil)
        #expect(h["w1"]?.jump?.description == "jump1")
        #expect(h["w2"]?.jump?.description == "admin@gw.example.net:2222")
        #expect(h["w1"]?.labels.keys.contains("ansible_ssh_common_args") == false)
    }

    /// The size cap holds for Ansible's formats too: a 5 MiB INI or YAML inventory is refused
    /// before it is read, not parsed whole (it once was, under a 64 MiB cap of its own).
    @Test(arguments: ["ini", "yml"])
    func aHugeAnsibleInventoryIsRefusedUnread(_ ext: String) throws {
        let path = NSTemporaryDirectory() + "rollctl-5mb-ansible-\(getpid()).\(ext)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let head = ext == "ini" ? "[web]\n" : "all:\n  hosts:\n"
        let line = ext == "ini" ? "web-000000 ansible_host=10.0.0.1\n" : "    web-000000: {ansible_host: 10.0.0.1}\n"
        let text = head + String(repeating: line, count: (5 << 20) / line.utf8.count + 1)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let e = try #require(throws: InputErrors.self) { try Inventory.load(path: path) }
        #expect(e.errors.map(\.message) == ["file is \(text.utf8.count / 1024) KiB; rollctl reads at most 4 MiB"])
    }
}
