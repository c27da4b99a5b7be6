// bench-core: the planner and the journal alone on N synthetic hosts (no SSH, no
// orchestrator: it has no in-process transport yet). One size per process, so the
// peak RSS printed (getrusage ru_maxrss) belongs to that size only.
//
//   bench-core --hosts N [--journal PATH] [--move-hosts M] [--hosts-per-rack K]
//
// Phases, each timed with a monotonic clock:
//   inventory  build N InventoryHost values (rack label, K hosts per rack)
//   plan       WavePlanner.plan (waves [1, 1%, 10%, 50%, 100%], max_parallel 50, failure_domain rack)
//   create     Orchestrator.create → Journal.createRollout (one transaction, N host rows + N locks)
//   moves      Journal.move through the happy path (pending → … → committed, 9 moves,
//              one write transaction each) for the first M hosts (default: all N)
// Prints one JSON object.
import Foundation
import Rollout

func monotonic() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func peakRSSKiB() -> Int {
    var ru = rusage()
    getrusage(RUSAGE_SELF.rawValue, &ru)
    return Int(ru.ru_maxrss)
}

func cpuSeconds() -> Double {
    var ru = rusage()
    getrusage(RUSAGE_SELF.rawValue, &ru)
    return Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6
        + Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) / 1e6
}

let args = Array(CommandLine.arguments.dropFirst())
func option(_ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}
guard let n = option("--hosts").flatMap(Int.init), n > 0 else {
    FileHandle.standardError.write(Data("usage: bench-core --hosts N [--journal PATH] [--move-hosts M] [--hosts-per-rack K]\n".utf8))
    exit(2)
}
let perRack = option("--hosts-per-rack").flatMap(Int.init) ?? 40
let moveHosts = min(n, option("--move-hosts").flatMap(Int.init) ?? n)
let journalPath = option("--journal") ?? NSTemporaryDirectory() + "bench-core-\(getpid())/journal.sqlite"
for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: journalPath + suffix) }

let t0 = monotonic()
var hosts: [InventoryHost] = []
hosts.reserveCapacity(n)
for i in 0..<n {
    let a = i + 1
    hosts.append(InventoryHost(name: String(format: "h%06d", i), address: "10.\(a >> 16 & 255).\(a >> 8 & 255).\(a & 255)",
                               labels: ["rack": "r\(i / perRack)", "cluster": "c\(i % 7)"]))
}
var defaults = InventoryDefaults()
defaults.port = 22
let inventory = Inventory(path: "/synthetic/inventory.yaml", defaults: defaults, hosts: hosts)
let plan = Plan(name: "bench-core", path: "/synthetic/plan.yaml", text: "synthetic plan for \(n) hosts\n",
                kernel: KernelSpec(release: "6.1.0-19-hosting"), inventoryPath: inventory.path,
                waves: WaveSpec(sizes: [.count(1), .percent(1), .percent(10), .percent(50), .percent(100)],
                                maxParallel: 50, failureDomain: "rack"))
// Every host reads an older release, except 1% already on the target (skipped).
var current: [String: String] = [:]
current.reserveCapacity(n)
for (i, h) in hosts.enumerated() { current[h.name] = i % 100 == 99 ? "6.1.0-19-hosting" : "6.1.0-18-hosting" }
let t1 = monotonic()

let layout = WavePlanner.plan(plan, inventory: inventory, currentRelease: current, unreachable: [:], customers: nil)
let t2 = monotonic()
let rssAfterPlan = peakRSSKiB()

let journal = try Journal(path: journalPath)
let id = try Orchestrator.create(plan: plan, inventory: inventory, layout: layout, journal: journal)
let t3 = monotonic()

let path: [HostState] = [.checked, .staged, .rebooting, .up, .verified, .soaking, .healthy, .committed]
let toMove = layout.waves.flatMap(\.hosts).prefix(moveHosts)
var moves = 0
for h in toMove {
    for s in path {
        try journal.move(id, host: h.name, to: s)
        moves += 1
    }
}
let t4 = monotonic()

let size = (try? FileManager.default.attributesOfItem(atPath: journalPath)[.size] as? Int) ?? 0
let wal = (try? FileManager.default.attributesOfItem(atPath: journalPath + "-wal")[.size] as? Int) ?? 0
let planned = layout.waves.reduce(0) { $0 + $1.hosts.count }
let batches = layout.waves.reduce(0) { $0 + $1.batches.count }
func f(_ x: Double) -> String { String(format: "%.4f", x) }
print("""
{"hosts":\(n),"planned":\(planned),"skipped":\(layout.skipped.count),"waves":\(layout.waves.count),"batches":\(batches),\
"inventory_s":\(f(t1 - t0)),"plan_s":\(f(t2 - t1)),"create_s":\(f(t3 - t2)),\
"moved_hosts":\(toMove.count),"moves":\(moves),"moves_s":\(f(t4 - t3)),"per_move_us":\(f(moves > 0 ? (t4 - t3) / Double(moves) * 1e6 : 0)),\
"total_s":\(f(t4 - t0)),"cpu_s":\(f(cpuSeconds())),"peak_rss_after_plan_kib":\(rssAfterPlan),"peak_rss_kib":\(peakRSSKiB()),\
"journal_bytes":\(size),"wal_bytes":\(wal)}
""")
