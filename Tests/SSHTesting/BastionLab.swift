import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A host reachable only through a bastion, built of two network namespaces
/// this process creates (needs root and iproute2):
///
/// ```
///  this process (root ns)        bastion ns                        target ns
///  198.51.100.(4k+2)/30 ─veth─ 198.51.100.(4k+1)/30
///                               203.0.113.(4k+1)/30 ──────veth─── 203.0.113.(4k+2)/30
///                               sshd :22 (AllowTcpForwarding)      sshd :22
/// ```
///
/// The root namespace routes the target's /30 through the bastion's namespace,
/// which forwards, but whose firewall rejects every forwarded packet
/// (`iptables -A FORWARD -j REJECT`): a direct connect from this process to
/// the target is refused at once, while the bastion's own connections to the
/// target (its OUTPUT, not FORWARD) pass. `allowDirect()` drops the rule (to
/// show a test that relies on the block would notice it gone).
///
/// Names carry this process's pid and a counter (parallel runs do not collide);
/// `k` is the first /30 no other lab holds. Leftovers of runs that died (their
/// pid gone) are removed when a lab is made. `cleanUp` (also on deinit) stops
/// both sshds and deletes the namespaces, with their veths and the route.
public final class BastionLab: @unchecked Sendable {
    public let bastionNS: String
    public let targetNS: String
    /// The bastion's address as this process reaches it.
    public let bastionAddress: String
    /// The target's address (as the bastion reaches it; this process has no path to it).
    public let targetAddress: String
    /// The bastion's address on the target's side (the source of its connections there).
    public let bastionInnerAddress: String
    public private(set) var bastion: TestSSHD!
    public private(set) var target: TestSSHD!
    private let rootVeth: String
    private let route: String
    /// Both sshds' folders, named like the namespaces (removed with leftovers too).
    public let dir: String
    private var cleaned = false

    private static let prefix = "rollctl-j"
    private static let counterLock = NSLock()
    nonisolated(unsafe) private static var counter = 0

    public init(bastionConfig: String = "", bastionMaxStartups: Int = 200) throws {
        Self.sweepLeftovers()
        Self.counterLock.lock()
        Self.counter += 1
        let n = Self.counter
        Self.counterLock.unlock()
        let tag = String(getpid(), radix: 36) + "-" + String(n, radix: 36)
        bastionNS = "\(Self.prefix)b-\(tag)"
        targetNS = "\(Self.prefix)t-\(tag)"
        dir = Self.labDir(tag)
        let ifTag = "rj" + tag.replacingOccurrences(of: "-", with: "")  // interface names: at most 15 characters
        rootVeth = ifTag + "a"
        let (bOut, bIn, tIn) = (ifTag + "b", ifTag + "c", ifTag + "d")
        // Pick a /30 pair: the root's route to the target /30 is the lock (a second `ip route add` fails).
        var chosen: Int?
        var addresses = ("", "", "", "", "")
        do {
            try Self.ip(["netns", "add", bastionNS])
            try Self.ip(["netns", "add", targetNS])
            try Self.ip(["link", "add", rootVeth, "type", "veth", "peer", "name", bOut])
            try Self.ip(["link", "set", bOut, "netns", bastionNS])
            try Self.ip(["link", "add", bIn, "type", "veth", "peer", "name", tIn])
            try Self.ip(["link", "set", bIn, "netns", bastionNS])
            try Self.ip(["link", "set", tIn, "netns", targetNS])
            try Self.ip(["link", "set", rootVeth, "up"])
            for ns in [bastionNS, targetNS] { try Self.ip(["-n", ns, "link", "set", "lo", "up"]) }
            let start = Int(getpid()) % 64
            for i in 0..<64 {
                let k = (start + i) % 64
                let rootSide = "198.51.100.\(4 * k + 2)", bastionOuter = "198.51.100.\(4 * k + 1)"
                let bastionInner = "203.0.113.\(4 * k + 1)", targetSide = "203.0.113.\(4 * k + 2)"
                if try Self.ipOutput(["-4", "-o", "addr", "show"]).contains(" \(rootSide)/") { continue }
                try Self.ip(["addr", "add", "\(rootSide)/30", "dev", rootVeth])
                do {
                    try Self.ip(["route", "add", "203.0.113.\(4 * k)/30", "via", bastionOuter, "dev", rootVeth])
                } catch {
                    try? Self.ip(["addr", "del", "\(rootSide)/30", "dev", rootVeth])
                    continue
                }
                chosen = k
                addresses = (rootSide, bastionOuter, bastionInner, targetSide, "203.0.113.\(4 * k)/30")
                break
            }
        } catch {
            Self.remove(bastionNS: bastionNS, targetNS: targetNS, rootVeth: rootVeth)
            throw error
        }
        bastionAddress = addresses.1
        bastionInnerAddress = addresses.2
        targetAddress = addresses.3
        route = addresses.4
        guard chosen != nil else {
            Self.remove(bastionNS: bastionNS, targetNS: targetNS, rootVeth: rootVeth)
            throw TestSSHDError("no free /30 in 198.51.100.0/24 for a bastion lab")
        }
        do {
            try Self.ip(["-n", bastionNS, "addr", "add", "\(bastionAddress)/30", "dev", bOut])
            try Self.ip(["-n", bastionNS, "link", "set", bOut, "up"])
            try Self.ip(["-n", bastionNS, "addr", "add", "\(bastionInnerAddress)/30", "dev", bIn])
            try Self.ip(["-n", bastionNS, "link", "set", bIn, "up"])
            try Self.ip(["-n", targetNS, "addr", "add", "\(targetAddress)/30", "dev", tIn])
            try Self.ip(["-n", targetNS, "link", "set", tIn, "up"])
            try Self.ip(["-n", targetNS, "route", "add", "default", "via", bastionInnerAddress])
            try Self.ip(["-n", bastionNS, "route", "add", "default", "via", addresses.0])
            try TestSSHD.run("/usr/sbin/ip", ["netns", "exec", bastionNS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
            try blockDirect()
            bastion = try TestSSHD(maxStartups: bastionMaxStartups, extraConfig: "AllowTcpForwarding yes\n" + bastionConfig,
                                   address: bastionAddress, port: 22, netns: bastionNS, dir: dir + "/bastion")
            target = try TestSSHD(address: targetAddress, port: 22, netns: targetNS, dir: dir + "/target")
        } catch {
            cleanUp()
            throw error
        }
    }

    deinit { cleanUp() }

    /// The bastion's firewall rejects what it would forward to the target (the default).
    public func blockDirect() throws {
        try TestSSHD.run("/usr/sbin/ip", ["netns", "exec", bastionNS, "iptables", "-A", "FORWARD", "-j", "REJECT"])
    }

    /// Lets the bastion's namespace forward: the target becomes reachable directly.
    public func allowDirect() throws {
        try TestSSHD.run("/usr/sbin/ip", ["netns", "exec", bastionNS, "iptables", "-D", "FORWARD", "-j", "REJECT"])
    }

    /// Established TCP connections to the bastion's sshd (one per session through it).
    public func bastionConnections() throws -> Int {
        let out = try TestSSHD.run("/usr/sbin/ip", ["netns", "exec", bastionNS, "ss", "-Htn", "state", "established", "( sport = :22 )"])
        return out.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.count
    }

    /// Stops both sshds and removes the namespaces, the veths and the route. Idempotent.
    public func cleanUp() {
        if cleaned { return }
        cleaned = true
        // The listeners first, then every process left in the namespaces (per-connection sshds,
        // which would write their logs into the folders being removed), then the folders.
        bastion?.stop()
        target?.stop()
        Self.remove(bastionNS: bastionNS, targetNS: targetNS, rootVeth: rootVeth)
        bastion?.cleanUp()
        target?.cleanUp()
        try? FileManager.default.removeItem(atPath: dir)
    }

    static func labDir(_ tag: String) -> String { "/tmp/rollctl-jlab-\(tag)" }

    static func remove(bastionNS: String, targetNS: String, rootVeth: String) {
        for ns in [bastionNS, targetNS] {
            // Whatever still runs in it (per-connection sshd children) keeps the namespace alive.
            if let pids = try? ipOutput(["netns", "pids", ns]) {
                for p in pids.split(separator: "\n").compactMap({ pid_t($0.trimmingCharacters(in: .whitespaces)) }) { kill(p, SIGKILL) }
            }
            try? ip(["netns", "del", ns])
        }
        // Deleting the namespaces destroys the veth pairs (and the route with the root side); in case not:
        try? ip(["link", "del", rootVeth])
    }

    /// Removes labs whose creating process is gone (a run killed before its cleanup):
    /// their namespaces (and what runs in them, veths, route) and their folders.
    static func sweepLeftovers() {
        var tags = Set<String>()
        for line in ((try? ipOutput(["netns", "list"])) ?? "").split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            if name.hasPrefix(prefix), name.count > prefix.count + 2 { tags.insert(String(name.dropFirst(prefix.count + 2))) }  // "<pid36>-<n36>"
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? [] where name.hasPrefix("rollctl-jlab-") {
            tags.insert(String(name.dropFirst("rollctl-jlab-".count)))
        }
        for tag in tags {
            guard let pidText = tag.split(separator: "-").first, let pid = Int(pidText, radix: 36) else { continue }
            if kill(pid_t(pid), 0) == 0 || errno == EPERM { continue }
            remove(bastionNS: "\(prefix)b-\(tag)", targetNS: "\(prefix)t-\(tag)", rootVeth: "rj" + tag.replacingOccurrences(of: "-", with: "") + "a")
            try? FileManager.default.removeItem(atPath: labDir(tag))
        }
    }

    static func ip(_ args: [String]) throws { try TestSSHD.run("/usr/sbin/ip", args) }
    static func ipOutput(_ args: [String]) throws -> String { try TestSSHD.run("/usr/sbin/ip", args) }
}
