import Foundation
import HealthGate
import SSH
import RolloutConfig

/// A host the orchestrator drives: commands through its shell (`HostReader`) and a
/// connection it can drop (after a reboot). `SSHHost` in production.
public protocol RemoteHost: HostReader {
    func close() async
    /// Copies a local file to `remotePath` on the host (`kernel.packages`). `progress` gets the
    /// bytes sent so far and the total. A host that cannot receive files throws.
    func upload(file localPath: String, to remotePath: String, pacer: TransferPacer?,
                progress: (@Sendable (UInt64, UInt64) -> Void)?) async throws -> UploadResult
}

extension RemoteHost {
    public func upload(file localPath: String, to remotePath: String, pacer: TransferPacer?,
                       progress: (@Sendable (UInt64, UInt64) -> Void)?) async throws -> UploadResult {
        throw StepError("\(hostName) cannot receive files (this transport has no upload)")
    }
}

extension SSHHost: RemoteHost {}

/// One reusable connection per host for the whole run; dropped after a reboot. `plan apply`
/// makes it before the survey, so the survey's connections serve the pre-checks too.
public actor Connections {
    /// Shared with the orchestrator (no copy): its index finds a host by name.
    let inventory: Inventory
    let transport: @Sendable (InventoryHost) -> any RemoteHost
    var hosts: [String: any RemoteHost] = [:]

    init(inventory: Inventory, transport: @escaping @Sendable (InventoryHost) -> any RemoteHost) {
        self.inventory = inventory
        self.transport = transport
    }

    func address(_ name: String) -> String { inventory.host(named: name)?.address ?? name }

    func host(_ name: String) -> any RemoteHost {
        if let h = hosts[name] { return h }
        return fresh(name)
    }

    func fresh(_ name: String) -> any RemoteHost {
        let h = transport(inventory.host(named: name) ?? InventoryHost(name: name, address: name))
        hosts[name] = h
        return h
    }

    func drop(_ name: String) async {
        if let h = hosts.removeValue(forKey: name) { await h.close() }
    }

    func closeAll() async {
        for h in hosts.values { await h.close() }
        hosts = [:]
    }

    /// The survey's connections kept for the pre-checks: at most this many, the first waves'
    /// hosts first (file descriptors and the hosts' sshd slots are not free).
    public static let keepLimit = 1024

    /// Keeps open the connections of `names` (in order, at most `limit`); closes the others.
    func keepOnly(_ names: [String], limit: Int = Connections.keepLimit) async {
        let keep = Set(names.prefix(limit))
        for (name, h) in hosts where !keep.contains(name) {
            hosts.removeValue(forKey: name)
            await h.close()
        }
    }
}
