// bench-core: the orchestration core at scale — the wave planner, the orchestrator's
// state machine and the SQLite journal — driving N synthetic in-process hosts
// (`SimHost`: a kernel, a boot id and a GRUB environment in memory; a reboot is
// instant) through a whole rollout with zero boot and soak times. Everything but
// SSH is the production code path. One size per process, so the peak RSS printed
// (getrusage ru_maxrss) belongs to that size only.
//
//   bench-core --hosts N [--journal PATH|postgres://…] [--hosts-per-rack K] [--max-parallel P]
//              [--customers C --webhook URL]
//
// With --customers, host i belongs to customer i mod C and the plan tells them by webhook (URL: a
// sink on loopback: CUSTOMERS=C bench/core.sh starts bench/notice-sink.py): maintenance and done notices, windows kept
// before every batch; the customers' side of the core.
//
// Phases, each timed with a monotonic clock:
//   inventory  build N InventoryHost values (rack label, K hosts per rack)
//   plan       WavePlanner.plan (waves [1, 1%, 10%, 50%, 100%], failure_domain rack)
//   create     Orchestrator.create → Journal.createRollout (one transaction)
//   run        Orchestrator.run: check, stage, reboot + verify per batch, gate
//              (zero soak: one sample per host), commit, wave by wave
// Afterwards it checks the outcome against the hosts themselves (every planned host
// on the new kernel as its saved default, rebooted exactly once; the journal says
// committed) and exits 1 if not. Prints one JSON object. BENCH_DEBUG=1 also prints each
// rollout-level progress line with the resident set size (pages) to stderr.
import Foundation
import Basics
import FleetsimCore
import HealthGate
import RolloutConfig
import Engine
import RolloutJournal
import RolloutTesting

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

let oldRelease = "6.1.0-18-hosting"
let newRelease = "6.1.0-19-hosting"

limitMallocArenas()  // as rollctl does at start (Basics/MallocArenas.swift)
let args = Array(CommandLine.arguments.dropFirst())
func option(_ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}
guard let n = option("--hosts").flatMap(Int.init), n > 0 else {
    FileHandle.standardError.write(Data("usage: bench-core --hosts N [--journal PATH|postgres://…] [--hosts-per-rack K] [--max-parallel P]\n".utf8))
    exit(2)
}
let perRack = option("--hosts-per-rack").flatMap(Int.init) ?? 40
let customerCount = option("--customers").flatMap(Int.init) ?? 0
let webhook = option("--webhook")
if customerCount > 0 && webhook == nil {
    FileHandle.standardError.write(Data("bench-core: --customers needs --webhook URL (a sink for the notices)\n".utf8))
    exit(2)
}
let maxParallel = option("--max-parallel").flatMap(Int.init) ?? 50
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
// Zero soak: one sample per host, so no growth trend (it needs 6); level, OOM and release checks run.
let gate = GateSettings(soak: .zero, interval: .seconds(1), probeTimeout: .seconds(1), sUnreclaimGrowthMaxPerHour: nil, testSite: nil)
let plan = Plan(name: "bench-core", path: "/synthetic/plan.yaml", text: "synthetic plan for \(n) hosts\n",
                kernel: KernelSpec(release: newRelease), inventoryPath: inventory.path,
                waves: WaveSpec(sizes: [.count(1), .percent(1), .percent(10), .percent(50), .percent(100)],
                                maxParallel: maxParallel, failureDomain: "rack"),
                reboot: RebootSpec(timeout: .seconds(30), settle: .zero), gate: gate,
                notify: webhook.map { NotifySpec(customersPath: "/synthetic/customers.csv", channel: .webhook(url: $0)) })
let customers: Customers? = customerCount > 0
    ? Customers(path: "/synthetic/customers.csv", rows: hosts.indices.map { i in
        (hosts[i].name, Customer(id: "c\(i % customerCount)", name: "Customer \(i % customerCount)", email: "c\(i % customerCount)@example.org"))
    })
    : nil
// Every host runs the older release, except 1% already on the target (skipped). The releases
// map is the survey's (plan apply drops it once planned): freed after planning here too.
let (simHosts, layout, t1) = { () -> ([String: SimHost], RolloutLayout, Double) in
    var current: [String: String] = [:]
    current.reserveCapacity(n)
    for (i, h) in hosts.enumerated() { current[h.name] = i % 100 == 99 ? newRelease : oldRelease }
    var sims: [String: SimHost] = [:]
    sims.reserveCapacity(n)
    for h in hosts { sims[h.name] = SimHost(name: h.name, release: current[h.name]!, kernels: [oldRelease, newRelease]) }
    let t1 = monotonic()
    return (sims, WavePlanner.plan(plan, inventory: inventory, currentRelease: current, unreachable: [:], customers: customers), t1)
}()
let t2 = monotonic()
let rssAfterPlan = peakRSSKiB()

func orDie<T>(_ what: String, _ body: () throws -> T) -> T {
    do { return try body() } catch {
        FileHandle.standardError.write(Data("bench-core: \(what): \(error)\n".utf8))
        exit(2)
    }
}
// A postgres:// URL runs the same rollout with the journal in PostgreSQL (an empty database).
let journal = orDie("journal") { try Journal(location: JournalLocation.parse(journalPath)) }
let id = orDie("create") { try Orchestrator.create(plan: plan, inventory: inventory, layout: layout, journal: journal) }
let t3 = monotonic()

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var lines = 0, problems = 0
    private var firstProblems: [String] = []
    func add(_ l: LogCapture.Line) {
        lock.lock(); defer { lock.unlock() }
        lines += 1
        if l.host == nil, ProcessInfo.processInfo.environment["BENCH_DEBUG"] != nil {
            let rss = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8))?.split(separator: " ")[1] ?? "?"
            FileHandle.standardError.write(Data("[\(String(format: "%.2f", monotonic()))] rss_pages=\(rss) \(l.message.prefix(80))\n".utf8))
        }
        if l.isProblem {
            problems += 1
            if firstProblems.count < 5 { firstProblems.append("\(l.host ?? "-"): \(l.message)") }
        }
    }
    var snapshot: (Int, Int, [String]) { lock.lock(); defer { lock.unlock() }; return (lines, problems, firstProblems) }
}
let counter = Counter()
let orchestrator = Orchestrator(rolloutID: id, plan: plan, inventory: inventory, journal: journal, customers: customers,
                                transport: { h in simHosts[h.name]! },
                                logger: LogCapture(onLine: { counter.add($0) }).logger("bench-core", level: .notice))
let outcome: RolloutOutcome
do { outcome = try await orchestrator.run() } catch {
    FileHandle.standardError.write(Data("bench-core: run: \(error)\n".utf8))
    exit(2)
}
let t4 = monotonic()
let rssAfterRun = peakRSSKiB()

// The outcome, checked against the hosts and the journal.
let planned = layout.waves.flatMap(\.hosts).map(\.name)
var wrong: [String] = []
var reboots = 0, commands = 0
let committedEntry = Grub.titlePath(release: newRelease)
for name in planned {
    let s = await simHosts[name]!.summary()
    reboots += s.reboots
    commands += s.commands
    if s.release != newRelease || s.saved != committedEntry || s.reboots != 1 { wrong.append("\(name): \(s)") }
}
// Counted in SQL: loading 100,000 journal rows here would set the process's peak, not the rollout.
let committed = orDie("read journal") { try journal.count(id, in: [.committed], wave: 0).all }
let events = orDie("read journal") { try journal.eventCount(id) }
let t5 = monotonic()

let size = (try? FileManager.default.attributesOfItem(atPath: journalPath)[.size] as? Int) ?? 0
let wal = (try? FileManager.default.attributesOfItem(atPath: journalPath + "-wal")[.size] as? Int) ?? 0
let batches = layout.waves.reduce(0) { $0 + $1.batches.count }
let (lines, problems, firstProblems) = counter.snapshot
func f(_ x: Double) -> String { String(format: "%.4f", x) }
print("""
{"hosts":\(n),"planned":\(planned.count),"skipped":\(layout.skipped.count),"waves":\(layout.waves.count),"batches":\(batches),\
"max_parallel":\(maxParallel),"customers":\(customerCount),"outcome":"\(outcome == .completed ? "completed" : "\(outcome)")","committed":\(committed),\
"reboots":\(reboots),"host_commands":\(commands),"journal_events":\(events),"log_lines":\(lines),"problems":\(problems),"wrong_hosts":\(wrong.count),\
"inventory_s":\(f(t1 - t0)),"plan_s":\(f(t2 - t1)),"create_s":\(f(t3 - t2)),"run_s":\(f(t4 - t3)),"check_s":\(f(t5 - t4)),\
"total_s":\(f(t4 - t0)),"cpu_s":\(f(cpuSeconds())),"peak_rss_after_plan_kib":\(rssAfterPlan),"peak_rss_after_run_kib":\(rssAfterRun),"peak_rss_kib":\(peakRSSKiB()),\
"journal_bytes":\(size),"wal_bytes":\(wal)}
""")
if outcome != .completed || committed != planned.count || !wrong.isEmpty {
    FileHandle.standardError.write(Data("bench-core: the rollout did not end as expected: \(outcome), \(committed)/\(planned.count) committed\n\((firstProblems + wrong.prefix(5)).joined(separator: "\n"))\n".utf8))
    exit(1)
}
