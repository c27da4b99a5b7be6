import Foundation
import Testing
import SSHTesting

/// The built `rollctl` against a host reachable only through a bastion
/// (`BastionLab`: network namespaces, the direct path rejected by the
/// bastion's firewall, real sshds).
@Suite("through a bastion, end to end", .serialized)
struct BastionE2ETests {
    /// An inventory of the bastion (jump-1) and the target (web-003) behind it, with
    /// known_hosts for both; `targetJump` is web-003's own `jump:` (nil: the default's).
    static func inventory(_ lab: BastionLab, targetJump: String? = nil) throws -> String {
        let dir = lab.target.dir
        try (lab.bastion.knownHostsLine() + lab.target.knownHostsLine()).write(toFile: dir + "/fleet_known_hosts", atomically: true, encoding: .utf8)
        let path = dir + "/inventory.yaml"
        try """
        defaults:
          user: \(lab.target.user)
          known_hosts: fleet_known_hosts
          connect_timeout: 3s
          jump: jump-1
        hosts:
          - name: jump-1
            address: \(lab.bastionAddress)
            identity: \(lab.bastion.ed25519Key)
            labels: {role: bastion}
          - name: web-003
            address: \(lab.targetAddress)
            identity: \(lab.target.ed25519Key)
            labels: {role: web}
        \(targetJump.map { "    jump: \($0)" } ?? "")

        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func fleetExecFactsAndTheDryRunGoThroughTheBastion() throws {
        let lab = try BastionLab(); defer { lab.cleanUp() }
        let inv = try Self.inventory(lab)

        // fleet exec: sshd on web-003 was reached from the bastion's inner address.
        let r = try CLI.run(["fleet", "exec", "-i", inv, "--hosts", "web-003", "--", "echo $SSH_CONNECTION"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("== web-003 (exit 0"), "\(r.output)")
        let conn = r.lines.first { $0.hasPrefix("  ") }?.trimmingCharacters(in: .whitespaces).split(separator: " ").map(String.init) ?? []
        #expect(conn.count == 4 && conn[0] == lab.bastionInnerAddress && conn[2] == lab.targetAddress && conn[3] == "22", "\(r.output)")
        // The default bastion itself is reached directly.
        let b = try CLI.run(["fleet", "exec", "-i", inv, "--hosts", "jump-1", "--", "echo $SSH_CONNECTION"])
        #expect(b.status == 0 && b.output.contains(" \(lab.bastionAddress) 22"), "\(b.output)")

        // fleet facts through the bastion.
        let f = try CLI.run(["fleet", "facts", "-i", inv, "--hosts", "web-003", "--json"])
        #expect(f.status == 0, "\(f.output)")
        #expect(f.json.first { $0["name"] as? String == "web-003" }?["reachable"] as? Bool == true, "\(f.output)")

        // The dry-run surveys web-003 through the bastion and says so.
        let plan = lab.target.dir + "/plan.yaml"
        try "name: via-bastion\nkernel: {release: 9.9.9-test}\ninventory: inventory.yaml\nselect: {labels: {role: web}}\nbootloader: grub\n"
            .write(toFile: plan, atomically: true, encoding: .utf8)
        let dry = try CLI.run(["plan", "apply", plan, "--dry-run"])
        #expect(dry.status == 0, "\(dry.output)")
        #expect(dry.output.contains("read 1 host"), "\(dry.output)")
        #expect(dry.output.contains("web-003 via bastion jump-1 (\(lab.bastionAddress):22)"), "\(dry.output)")
        #expect(dry.output.contains("note: 1 host is reached via bastion jump-1 (\(lab.bastionAddress):22)"), "\(dry.output)")

        // `jump: none` on the host: dialled directly, which the bastion's firewall refuses.
        let direct = try Self.inventory(lab, targetJump: "none")
        let d = try CLI.run(["fleet", "exec", "-i", direct, "--hosts", "web-003", "--", "true"])
        #expect(d.status == 1, "\(d.output)")
        #expect(d.output.contains("web-003 (unreachable: [connect_refused]"), "\(d.output)")
    }

    @Test func aChangedBastionKeyIsRefusedNamingTheBastion() throws {
        let lab = try BastionLab(); defer { lab.cleanUp() }
        let inv = try Self.inventory(lab)
        try lab.bastion.restartWithNewHostKey()
        let r = try CLI.run(["fleet", "exec", "-i", inv, "--hosts", "web-003", "--", "true"])
        #expect(r.status == 1, "\(r.output)")
        #expect(r.output.contains("web-003 (unreachable: [host_key_mismatch] bastion jump-1 (\(lab.bastionAddress):22): host key for \(lab.bastionAddress):22 has CHANGED"), "\(r.output)")
    }
}
