import Foundation
import Basics
import SSH
import RolloutConfig
import RolloutJournal

/// One upload in flight, for a progress display.
public struct UploadProgress: Sendable, Equatable {
    public var host: String
    public var file: String
    public var sent: UInt64
    public var total: UInt64
    /// The last report of this upload (done, or failed).
    public var finished: Bool

    public init(host: String, file: String, sent: UInt64, total: UInt64, finished: Bool) {
        self.host = host
        self.file = file
        self.sent = sent
        self.total = total
        self.finished = finished
    }
}

/// The rollout's kernel packages (hashed once per run), its upload slots and its pacer.
final class Shipment: @unchecked Sendable {
    private let lock = NSLock()
    private var packages: [ShippedPackage]?
    private var progressSink: (@Sendable (UploadProgress) -> Void)?
    let slots: UploadSlots
    let pacer: TransferPacer?

    init(_ kernel: KernelSpec) {
        slots = UploadSlots(limit: kernel.uploadParallel)
        pacer = kernel.uploadBandwidth.map { TransferPacer(bytesPerSecond: $0) }
    }

    var shipped: [ShippedPackage]? {
        get { lock.lock(); defer { lock.unlock() }; return packages }
        set { lock.lock(); packages = newValue; lock.unlock() }
    }
    var sink: (@Sendable (UploadProgress) -> Void)? {
        get { lock.lock(); defer { lock.unlock() }; return progressSink }
        set { lock.lock(); progressSink = newValue; lock.unlock() }
    }
}

/// At most `limit` uploads at once across the rollout (`kernel.upload_parallel`), first come first served.
actor UploadSlots {
    let limit: Int
    private var busy = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []
    init(limit: Int) { self.limit = max(1, limit) }

    func acquire() async {
        if busy < limit { busy += 1; return }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty { busy -= 1 } else { waiting.removeFirst().resume() }
    }
}

extension Orchestrator {
    /// Where upload progress goes (the CLI's progress line on a TTY); called on SSH threads.
    public func onUploadProgress(_ sink: @escaping @Sendable (UploadProgress) -> Void) { shipment.sink = sink }

    /// The rollout's packages with their SHA-256, before any host is touched. The first run
    /// journals them; a later run (a resume) refuses to go on when a file changed since, so
    /// every host gets the same bytes. Throws (the run stops, resumable) rather than guess.
    func preparePackages() async throws {
        guard !plan.kernel.packages.isEmpty, shipment.shipped == nil else { return }
        let digests = try await ShippedPackage.digest(plan.kernel.packages)
        let marker = "{\"kernel_packages\":"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        if let row = try journal.firstRolloutEvent(rolloutID, dataPrefix: marker),
           let data = row.data?.dropFirst(marker.count).dropLast(), let journaled = try? JSONDecoder().decode([ShippedPackage].self, from: Data(data.utf8)) {
            for j in journaled {
                guard let now = digests.first(where: { $0.name == j.name }) else {
                    throw PackageError("kernel package \(j.name) was shipped by this rollout but is no longer in its plan")
                }
                if now.sha256 != j.sha256 || now.size != j.size {
                    throw PackageError("kernel package \(j.name) changed since the rollout started (SHA-256 \(j.sha256.prefix(16))…, \(Quantity.formatBytes(j.size)); now \(now.sha256.prefix(16))…, \(Quantity.formatBytes(now.size)) at \(now.path)): put the original file back to resume, or abort this rollout and start a new one")
                }
            }
        } else {
            let json = String(decoding: try encoder.encode(digests), as: UTF8.self)
            try await journal.event(rolloutID, kind: .info, "kernel packages: " + digests.map { "\($0.name) (\(Quantity.formatBytes($0.size)), SHA-256 \($0.sha256))" }.joined(separator: ", "),
                                    data: marker + json + "}")
        }
        shipment.shipped = digests
    }

    /// Ships the packages to one host and installs them: each file not already there with the
    /// same SHA-256 is uploaded under a temporary name (intent journaled first), checked with
    /// `sha256sum` on the host and only then given its name (outcome journaled); then one
    /// `dpkg -i` (or `dnf install`) of them all, and the folder goes. A checksum that does not
    /// match fails the host, the bad file removed.
    func installPackages(_ name: String, _ host: any RemoteHost) async throws {
        let dir = PackageCommands.directory(rollout: rolloutID)
        // A resume after the install was journaled (the driver died before staging): done.
        if try journal.hasEvent(rolloutID, host: name, kind: .outcome, prefix: Self.installedMark) {
            say(name, "packages already installed by an earlier run: not shipped or installed again")
            return try await removeShipment(name, host, dir)
        }
        let shipped: [ShippedPackage]
        do {
            shipped = try await shipPackages(name, host)
        } catch where !Self.isJournalFailure(error) {
            // The host fails; what reached it goes (best effort: the connection may be gone).
            _ = try? await host.run(PackageCommands.remove(directory: dir), timeout: .seconds(60))
            throw error
        }
        let names = shipped.map(\.name)
        do {
            _ = try await mustRun(host, PackageCommands.install(directory: dir, packages: shipped), "install", timeout: .seconds(1800))
        } catch {
            // The host fails; what was shipped to it goes with it (a new rollout ships anew).
            _ = try? await host.run(PackageCommands.remove(directory: dir), timeout: .seconds(60))
            throw error
        }
        try await journal.event(rolloutID, host: name, kind: .outcome, Self.installedMark + "\(names.joined(separator: ", ")) from \(dir)")
        try await removeShipment(name, host, dir)
    }

    /// The host's package folder goes (a failure is reported: the kernel is installed).
    func removeShipment(_ name: String, _ host: any RemoteHost, _ dir: String) async throws {
        do {
            _ = try await mustRun(host, PackageCommands.remove(directory: dir), "remove \(dir)", timeout: .seconds(120))
        } catch where !Self.isJournalFailure(error) {
            say(name, "installed, but \(dir) could not be removed: \(describe(error)); remove it by hand", problem: true)
        }
    }

    static let installedMark = "installed shipped packages: "

    /// The upload half of `installPackages`: afterwards every package is in the host's folder
    /// under its name, its SHA-256 checked there. Returns the packages.
    func shipPackages(_ name: String, _ host: any RemoteHost) async throws -> [ShippedPackage] {
        guard let shipped = shipment.shipped else { throw StepAbort(description: "kernel packages were not hashed before the rollout began") }
        let dir = PackageCommands.directory(rollout: rolloutID)
        let names = shipped.map(\.name)
        let present = PackageCommands.parseSums(try await mustRun(host, PackageCommands.prepare(directory: dir, names: names + names.map(PackageCommands.partial)), "prepare \(dir)", timeout: .seconds(300)),
                                                names: names + names.map(PackageCommands.partial))
        for p in shipped {
            if present[p.name] == p.sha256 {
                try await journal.event(rolloutID, host: name, kind: .info, "\(p.name) is already in \(dir) with the same SHA-256: upload skipped")
                say(name, "\(p.name): already on the host (same SHA-256), upload skipped")
                continue
            }
            if present[PackageCommands.partial(p.name)] == p.sha256 {
                // An earlier run uploaded it whole and died before the rename.
                _ = try await mustRun(host, PackageCommands.place(directory: dir, name: p.name), "rename \(PackageCommands.partial(p.name))")
                try await journal.event(rolloutID, host: name, kind: .outcome, "\(p.name): an earlier run's upload was found whole (same SHA-256) and renamed: upload skipped")
                say(name, "\(p.name): an earlier run's upload is whole (same SHA-256), upload skipped")
                continue
            }
            try await journal.event(rolloutID, host: name, kind: .intent, "upload \(p.name) (\(Quantity.formatBytes(p.size)), SHA-256 \(p.sha256)) to \(dir)")
            let part = dir + "/" + PackageCommands.partial(p.name)
            await shipment.slots.acquire()
            let sink = shipment.sink
            let result: UploadResult
            do {
                result = try await host.upload(file: p.path, to: part, pacer: shipment.pacer) { sent, total in
                    sink?(UploadProgress(host: name, file: p.name, sent: sent, total: total, finished: false))
                }
                await shipment.slots.release()
                sink?(UploadProgress(host: name, file: p.name, sent: result.bytes, total: p.size, finished: true))
            } catch {
                await shipment.slots.release()
                sink?(UploadProgress(host: name, file: p.name, sent: 0, total: p.size, finished: true))
                throw StepError("upload of \(p.name) to \(part) failed: \(describe(error))")
            }
            guard result.bytes == p.size else {
                throw StepError("upload of \(p.name): \(result.bytes) bytes sent, the file has \(p.size) (it changed while rollctl read it)")
            }
            let out = try await mustRun(host, PackageCommands.checksum(directory: dir, file: PackageCommands.partial(p.name)), "checksum \(part)", timeout: .seconds(600))
            let onHost = PackageCommands.hexPrefix(String(out.prefix(200)))
            guard onHost == p.sha256 else {
                _ = try? await host.run(PackageCommands.discard(directory: dir, name: p.name), timeout: .seconds(60))
                try await journal.event(rolloutID, host: name, kind: .outcome, "upload of \(p.name) refused: SHA-256 on the host \(onHost ?? "unreadable"), expected \(p.sha256); the file was removed")
                throw StepError("\(p.name) arrived corrupted: SHA-256 on the host is \(onHost ?? "unreadable"), expected \(p.sha256) — removed, nothing installed; check the host's disk and the path to it, then roll back or start a new rollout")
            }
            _ = try await mustRun(host, PackageCommands.place(directory: dir, name: p.name), "rename \(part)")
            let secs = max(0.001, Double(result.elapsed.components.seconds) + Double(result.elapsed.components.attoseconds) / 1e18)
            let rate = Quantity.formatBytes(UInt64(Double(p.size) / secs)) + "/s"
            try await journal.event(rolloutID, host: name, kind: .outcome, "uploaded \(p.name) to \(dir) in \(PlanFormat.duration(result.elapsed)) (\(rate)); SHA-256 verified on the host")
            say(name, "uploaded \(p.name) (\(Quantity.formatBytes(p.size)), \(rate)); SHA-256 verified on the host")
        }
        return shipped
    }
}
