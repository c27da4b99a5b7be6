import Foundation
import SSHTesting
import Testing
@testable import Basics
@testable import NetIO
@testable import SSH
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine

/// The orchestrator's upload step (`kernel.packages`) over a real sshd on loopback: the folder,
/// the journal's intent and outcome, the skip on resume, the refusal of a corrupted upload.
/// The host here is this machine, so the test stops before `dpkg -i` (the fleetsim end-to-end
/// test installs).
@Suite("shipping kernel packages over a real sshd", .serialized)
struct PackageShippingTests {
    final class Rig: @unchecked Sendable {
        let sshd: TestSSHD
        let dir: String
        let journal: Journal
        let inventory: Inventory
        var plan: Plan
        let package: String

        init(size: Int) throws {
            sshd = try TestSSHD(extraConfig: "Subsystem sftp /usr/lib/openssh/sftp-server")
            dir = sshd.dir
            journal = try Journal(path: dir + "/journal.sqlite")
            package = dir + "/linux-image-6.1.0-19-hosting_6.1.76-1_amd64.deb"
            var data = Data("!<arch>\n".utf8)
            // From the kernel: a byte loop in a debug build holds a thread of the test pool for seconds.
            guard let random = FileHandle(forReadingAtPath: "/dev/urandom") else { throw CocoaError(.fileReadNoPermission) }
            data.append(random.readData(ofLength: size))
            try? random.close()
            try data.write(to: URL(fileURLWithPath: package))
            var defaults = InventoryDefaults()
            defaults.port = sshd.port
            inventory = Inventory(path: dir + "/inventory.yaml", defaults: defaults,
                                  hosts: [InventoryHost(name: "pkg-host", address: sshd.address)])
            let kernel = KernelSpec(release: "6.1.0-19-hosting", packages: [KernelPackage(path: package, name: (package as NSString).lastPathComponent, kind: .deb, size: UInt64(data.count))])
            plan = Plan(name: "ship", path: dir + "/plan.yaml", text: "ship test plan\n", kernel: kernel, inventoryPath: inventory.path)
        }

        func create() throws -> String {
            let layout = WavePlanner.plan(plan, inventory: inventory, currentRelease: ["pkg-host": "6.1.0-17-hosting"], unreachable: [:], customers: nil)
            return try Orchestrator.create(plan: plan, inventory: inventory, layout: layout, journal: journal)
        }

        func orchestrator(_ id: String) -> Orchestrator {
            let d = sshd
            return Orchestrator(rolloutID: id, plan: plan, inventory: inventory, journal: journal, transport: { h in
                SSHHost(endpoint: SSHEndpoint(name: h.name, address: d.address, port: d.port, user: d.user),
                        options: SSHConnectOptions(connectTimeout: .seconds(5), knownHostsPath: d.knownHostsPath, identityFiles: [d.ed25519Key], useAgent: false))
            })
        }

        func events(_ id: String) throws -> [String] { try journal.events(id).filter { $0.host == "pkg-host" }.map { "\($0.kind.rawValue) \($0.message)" } }

        deinit { sshd.cleanUp() }
    }

    @Test func anUploadIsJournaledCheckedAndSkippedOnResume() async throws {
        let rig = try Rig(size: 24 << 20)
        let id = try rig.create()
        let remoteDir = PackageCommands.directory(rollout: id)
        defer { try? FileManager.default.removeItem(atPath: remoteDir) }
        let name = (rig.package as NSString).lastPathComponent
        let o = rig.orchestrator(id)
        try await o.preparePackages()
        let before = try rig.events(id).count
        let host = await o.connections.host("pkg-host")
        _ = try await o.shipPackages("pkg-host", host)
        await o.connections.closeAll()
        // There, whole, in a folder only its owner can enter.
        #expect(try sha256Hex(file: remoteDir + "/" + name).hex == (try sha256Hex(file: rig.package)).hex)
        let attrs = try FileManager.default.attributesOfItem(atPath: remoteDir)
        #expect((attrs[.posixPermissions] as? Int) == 0o700)
        #expect(!FileManager.default.fileExists(atPath: remoteDir + "/" + name + ".part"))
        let first = Array(try rig.events(id).dropFirst(before))
        #expect(first.count == 2 && first[0].hasPrefix("intent upload \(name)") && first[1].hasPrefix("outcome uploaded \(name)"), "\(first)")
        let inode = (try FileManager.default.attributesOfItem(atPath: remoteDir + "/" + name))[.systemFileNumber] as? Int

        // A resume (another orchestrator, the same rollout): the same file is there, nothing is sent.
        let again = rig.orchestrator(id)
        let uploads = EventCounter()
        again.onUploadProgress { p in if p.finished { uploads.add() } }
        try await again.preparePackages()
        _ = try await again.shipPackages("pkg-host", await again.connections.host("pkg-host"))
        await again.connections.closeAll()
        #expect(uploads.value == 0)
        let second = try rig.events(id).dropFirst(before + first.count)
        #expect(second.count == 1 && second.first?.contains("upload skipped") == true, "\(second)")
        #expect((try FileManager.default.attributesOfItem(atPath: remoteDir + "/" + name))[.systemFileNumber] as? Int == inode)

        // The file on the host damaged since: it is sent again (the checksum decides, not the name).
        let fd = open(remoteDir + "/" + name, O_WRONLY)
        #expect(pwrite(fd, "XXXX", 4, 100) == 4)
        close(fd)
        let third = rig.orchestrator(id)
        try await third.preparePackages()
        _ = try await third.shipPackages("pkg-host", await third.connections.host("pkg-host"))
        await third.connections.closeAll()
        #expect(try sha256Hex(file: remoteDir + "/" + name).hex == (try sha256Hex(file: rig.package)).hex)
        #expect(try rig.events(id).last?.hasPrefix("outcome uploaded \(name)") == true)
    }

    @Test func aCorruptedUploadIsRefusedByItsChecksum() async throws {
        let rig = try Rig(size: 16 << 20)
        let id = try rig.create()
        let remoteDir = PackageCommands.directory(rollout: id)
        defer { try? FileManager.default.removeItem(atPath: remoteDir) }
        let name = (rig.package as NSString).lastPathComponent
        let o = rig.orchestrator(id)
        // Half-way through, the bytes already written on the host are damaged (a bad disk, a
        // meddler): SFTP reported every write as done; only the host's sha256sum can tell.
        let damaged = EventCounter()
        let part = remoteDir + "/" + name + ".part"
        o.onUploadProgress { p in
            guard !p.finished, p.sent > p.total / 2, damaged.value == 0 else { return }
            let fd = open(part, O_WRONLY)
            if fd >= 0, pwrite(fd, "CORRUPTED", 9, 0) == 9 { damaged.add() }
            close(fd)
        }
        try await o.preparePackages()
        do {
            _ = try await o.shipPackages("pkg-host", await o.connections.host("pkg-host"))
            Issue.record("a corrupted upload was accepted")
        } catch {
            #expect("\(error)".contains("arrived corrupted"), "\(error)")
            #expect("\(error)".contains((try sha256Hex(file: rig.package)).hex))
        }
        await o.connections.closeAll()
        #expect(damaged.value == 1)
        #expect(!FileManager.default.fileExists(atPath: part))
        #expect(!FileManager.default.fileExists(atPath: remoteDir + "/" + name))
        #expect(try rig.events(id).last?.contains("refused") == true)
    }

    @Test func aPackageChangedSinceTheStartStopsAResume() async throws {
        let rig = try Rig(size: 1 << 20)
        let id = try rig.create()
        try await rig.orchestrator(id).preparePackages()
        // The same size, other bytes: a rebuilt package under the same name.
        let fd = open(rig.package, O_WRONLY)
        #expect(pwrite(fd, "rebuilt!", 8, 200) == 8)
        close(fd)
        do {
            try await rig.orchestrator(id).preparePackages()
            Issue.record("a changed package was accepted on resume")
        } catch let e as PackageError {
            #expect(e.description.contains("changed since the rollout started"), "\(e)")
        }
    }
}

final class EventCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}
