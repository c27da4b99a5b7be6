import Testing
@testable import RolloutConfig
@testable import Engine

/// SplitMix64: a small seeded generator, so every random fleet can be rebuilt from its seed.
struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One random planning problem.
struct RandomFleet {
    var plan: Plan
    var inventory: Inventory
    var releases: [String: String]
    var unreachable: [String: String]
    var customers: Customers?

    static let target = "6.1.0-19-hosting"

    init(seed: UInt64, hosts: Int? = nil) {
        var rng = SeededRNG(seed: seed)
        let n = hosts ?? {
            let pick = Int.random(in: 0..<10, using: &rng)
            return pick < 6 ? Int.random(in: 1...50, using: &rng) : pick < 9 ? Int.random(in: 51...500, using: &rng) : Int.random(in: 501...5000, using: &rng)
        }()
        let racks = Int.random(in: 1...max(1, min(60, n)), using: &rng)
        let unlabelledShare = Bool.random(using: &rng) ? 0.0 : Double.random(in: 0...0.2, using: &rng)
        var hostList: [InventoryHost] = []
        for i in 0..<n {
            var labels = ["role": Int.random(in: 0..<5, using: &rng) == 0 ? "db" : "web", "cluster": "c\(i % 3)"]
            if Double.random(in: 0..<1, using: &rng) >= unlabelledShare {
                labels["rack"] = "r\(Int.random(in: 0..<racks, using: &rng))"
            }
            hostList.append(InventoryHost(name: "h\(i)", address: "10.\(i / 65536).\(i / 256 % 256).\(i % 256)", labels: labels))
        }
        inventory = Inventory(path: "inventory.yaml", hosts: hostList)
        var selection = Selection()
        if Bool.random(using: &rng) { selection.labels = ["role": "web"] }
        if Int.random(in: 0..<4, using: &rng) == 0 {
            selection.hosts = hostList.filter { _ in Bool.random(using: &rng) }.map(\.name)
        }
        if Bool.random(using: &rng) {
            selection.exclude = hostList.filter { _ in Int.random(in: 0..<20, using: &rng) == 0 }.map(\.name)
        }
        // Cumulative sizes: counts first, then growing shares, ending at 100%.
        var sizes: [WaveSize] = [.count(Int.random(in: 1...3, using: &rng))]
        if Bool.random(using: &rng) { sizes.append(.count(Int.random(in: 4...20, using: &rng))) }
        var p = 0.0
        for _ in 0..<Int.random(in: 0...3, using: &rng) {
            p += Double.random(in: 1...30, using: &rng)
            if p < 100 { sizes.append(.percent(p)) }
        }
        sizes.append(.percent(100))
        let separate = Bool.random(using: &rng)
        let waves = WaveSpec(sizes: sizes, maxParallel: Int.random(in: 1...20, using: &rng),
                             failureDomain: Int.random(in: 0..<5, using: &rng) == 0 ? nil : "rack", separateCustomers: separate)
        plan = Plan(name: "random", path: "plan.yaml", text: "", kernel: KernelSpec(release: Self.target), inventoryPath: "inventory.yaml",
                    selection: selection, waves: waves)
        releases = [:]
        unreachable = [:]
        for h in hostList {
            switch Int.random(in: 0..<20, using: &rng) {
            case 0: releases[h.name] = Self.target
            case 1: unreachable[h.name] = "[connect_refused] connection refused"
            case 2: break // unknown release
            default: releases[h.name] = "6.1.0-17-hosting"
            }
        }
        if separate || Bool.random(using: &rng) {
            var rows: [(host: String, customer: Customer)] = []
            let pool = max(1, n / 3)
            for h in hostList {
                for _ in 0..<Int.random(in: 0...4, using: &rng) {
                    let id = Int.random(in: 0..<pool, using: &rng)
                    rows.append((h.name, Customer(id: "c\(id)", name: "Customer \(id)", email: "c\(id)@example.org")))
                }
            }
            customers = Customers(path: "customers.csv", rows: rows)
        }
    }

    func layout() -> RolloutLayout {
        WavePlanner.plan(plan, inventory: inventory, currentRelease: releases, unreachable: unreachable, customers: customers)
    }
}

@Suite struct WavePlannerTests {
    /// Checks every invariant of a layout; returns the violations (empty: all hold).
    static func violations(_ f: RandomFleet, _ layout: RolloutLayout) -> [String] {
        var out: [String] = []
        let selected = PlanLoader.selectedHosts(f.plan, inventory: f.inventory).map(\.name)
        let placed = layout.waves.flatMap { $0.hosts.map(\.name) }
        let skipped = layout.skipped.map(\.host.name)
        // Every selected host exactly once, in a wave or skipped; nothing else.
        if (placed + skipped).sorted() != selected.sorted() { out.append("hosts are not a partition of the selection") }
        if Set(placed).count != placed.count { out.append("a host is in two waves or batches") }
        // Waves numbered from 1 (the canary), none empty.
        if layout.waves.map(\.number) != Array(1...max(1, layout.waves.count)).prefix(layout.waves.count).map({ $0 }) {
            out.append("waves not numbered 1...n")
        }
        if layout.waves.contains(where: { $0.batches.isEmpty || $0.batches.contains(where: \.isEmpty) }) { out.append("an empty wave or batch") }
        // The canary is the first size (when enough hosts).
        if case .count(let c) = f.plan.waves.sizes[0], let first = layout.waves.first, first.hosts.count != min(c, placed.count) {
            out.append("canary has \(first.hosts.count) hosts, expected \(min(c, placed.count))")
        }
        // Batches: parallelism, failure domains, customers.
        for w in layout.waves {
            for b in w.batches {
                if b.count > f.plan.waves.maxParallel { out.append("wave \(w.number): batch of \(b.count) > max_parallel \(f.plan.waves.maxParallel)") }
                if let d = f.plan.waves.failureDomain {
                    let values = b.compactMap { $0.labels[d] }
                    if Set(values).count != values.count { out.append("wave \(w.number): two hosts of one \(d) in a batch") }
                }
                if f.plan.waves.separateCustomers, let c = f.customers {
                    var seen = Set<String>()
                    for h in b {
                        for id in c.idsByHost[h.name] ?? [] where !seen.insert(id).inserted {
                            out.append("wave \(w.number): customer \(id) twice in a batch")
                        }
                    }
                }
            }
        }
        // Reasons: excluded, unreachable, already on the target; nobody else skipped.
        let excluded = Set(f.plan.selection.exclude)
        for s in layout.skipped {
            let n = s.host.name
            let expected = excluded.contains(n) ? "excluded" : f.unreachable[n] != nil ? "unreachable" : f.releases[n] == RandomFleet.target ? "already on" : nil
            if expected == nil || !s.reason.hasPrefix(expected!) { out.append("\(n) skipped as '\(s.reason)', expected \(expected ?? "not skipped")") }
        }
        for n in placed where excluded.contains(n) || f.unreachable[n] != nil || f.releases[n] == RandomFleet.target {
            out.append("\(n) should have been skipped")
        }
        // Spread: the first hosts of the rollout, up to one per failure domain, are all in different domains.
        if let d = f.plan.waves.failureDomain {
            let toRoll = layout.waves.flatMap(\.hosts)
            let domains = Set(toRoll.map { WavePlanner.domainKey($0, d) }).count
            var prefix: [InventoryHost] = []
            for w in layout.waves {
                guard prefix.count + w.hosts.count <= domains else { break }
                prefix += w.hosts
            }
            let keys = prefix.map { WavePlanner.domainKey($0, d) }
            if Set(keys).count != keys.count { out.append("early waves repeat a failure domain before all were sampled: \(keys)") }
        }
        return out
    }

    @Test(arguments: 0..<300)
    func invariantsHoldOnRandomFleets(seed: UInt64) {
        let f = RandomFleet(seed: seed)
        let layout = f.layout()
        let v = Self.violations(f, layout)
        #expect(v.isEmpty, "seed \(seed), \(f.inventory.hosts.count) hosts: \(v.prefix(5))")
        // Deterministic: the same input gives the same layout.
        let again = f.layout()
        func names(_ l: RolloutLayout) -> [[[String]]] { l.waves.map { w in w.batches.map { b in b.map(\.name) } } }
        #expect(names(again) == names(layout))
        #expect(again.skipped == layout.skipped)
    }

    @Test(arguments: [1, 2, 3, 4999, 5000])
    func invariantsHoldAtTheEdges(hosts: Int) {
        for seed: UInt64 in [7, 8] {
            let f = RandomFleet(seed: seed &* 1000 &+ UInt64(hosts), hosts: hosts)
            let v = Self.violations(f, f.layout())
            #expect(v.isEmpty, "\(hosts) hosts, seed \(seed): \(v.prefix(5))")
        }
    }

    func fleet(_ n: Int, racks: Int) -> Inventory {
        Inventory(path: "inv.yaml", hosts: (1...n).map { i in
            InventoryHost(name: String(format: "web-%03d", i), address: "10.0.0.\(i)", labels: ["rack": "r\((i - 1) % racks + 1)"])
        })
    }

    func plan(_ sizes: [WaveSize], maxParallel: Int = 5, domain: String? = "rack", separate: Bool = false,
              selection: Selection = Selection()) -> Plan {
        Plan(name: "t", path: "t.yaml", text: "", kernel: KernelSpec(release: "6.1.0-19-hosting"), inventoryPath: "inv.yaml",
             selection: selection, waves: WaveSpec(sizes: sizes, maxParallel: maxParallel, failureDomain: domain, separateCustomers: separate))
    }

    @Test func twelveHostsThreeRacksCanaryThenQuarterThenRest() {
        let inv = fleet(12, racks: 3)
        let layout = WavePlanner.plan(plan([.count(1), .percent(25), .percent(100)]), inventory: inv,
                                      currentRelease: [:], unreachable: [:], customers: nil)
        #expect(layout.waves.map { $0.hosts.count } == [1, 2, 9])
        #expect(layout.waves[0].hosts.map(\.name) == ["web-001"])
        // The second wave samples the other racks.
        #expect(Set(layout.waves[1].hosts.map { $0.labels["rack"]! }) == ["r2", "r3"])
        // 9 hosts of 3 racks: batches of at most one per rack.
        #expect(layout.waves[2].batches.map(\.count) == [3, 3, 3])
        #expect(layout.skipped.isEmpty)
    }

    @Test func skippedHostsCarryTheirReason() {
        let inv = fleet(6, racks: 2)
        let layout = WavePlanner.plan(plan([.count(1), .percent(100)], selection: Selection(exclude: ["web-006"])), inventory: inv,
                                      currentRelease: ["web-001": "6.1.0-19-hosting", "web-002": "6.1.0-17-hosting"],
                                      unreachable: ["web-003": "[timeout] no answer in 10s"], customers: nil)
        #expect(layout.skipped.map(\.host.name) == ["web-001", "web-003", "web-006"])
        #expect(layout.skipped.map(\.reason) == ["already on 6.1.0-19-hosting", "unreachable: [timeout] no answer in 10s",
                                                 "excluded by the plan (select.exclude)"])
        #expect(layout.waves.flatMap(\.hosts).map(\.name).sorted() == ["web-002", "web-004", "web-005"])
    }

    @Test func customersAreNeverTwiceInABatch() {
        let inv = fleet(4, racks: 4)
        let c = Customers(path: "c.csv", rows: [("web-001", Customer(id: "c1", name: "A", email: "a@example.org")),
                                                ("web-002", Customer(id: "c1", name: "A", email: "a@example.org")),
                                                ("web-003", Customer(id: "c2", name: "B", email: "b@example.org"))])
        let together = WavePlanner.plan(plan([.percent(100)], separate: false), inventory: inv, currentRelease: [:], unreachable: [:], customers: c)
        #expect(together.waves[0].batches.count == 1)
        let apart = WavePlanner.plan(plan([.percent(100)], separate: true), inventory: inv, currentRelease: [:], unreachable: [:], customers: c)
        #expect(apart.waves[0].batches.map { $0.map(\.name) } == [["web-001", "web-003", "web-004"], ["web-002"]])
    }

    @Test func nothingToRollGivesNoWaves() {
        let inv = fleet(3, racks: 1)
        let all = Dictionary(uniqueKeysWithValues: inv.hosts.map { ($0.name, "6.1.0-19-hosting") })
        let layout = WavePlanner.plan(plan([.count(1), .percent(100)]), inventory: inv, currentRelease: all, unreachable: [:], customers: nil)
        #expect(layout.waves.isEmpty)
        #expect(layout.skipped.count == 3)
    }

    @Test func waveSizesAreCumulativeTargets() {
        #expect(WavePlanner.waveSizes([.count(1), .percent(5), .percent(25), .percent(100)], total: 100) == [1, 4, 20, 75])
        #expect(WavePlanner.waveSizes([.count(1), .percent(5), .percent(25), .percent(100)], total: 3) == [1, 1, 1])
        #expect(WavePlanner.waveSizes([.count(1), .percent(100)], total: 1) == [1])
        #expect(WavePlanner.waveSizes([.count(5), .count(10), .percent(100)], total: 7) == [5, 2])
        #expect(WavePlanner.waveSizes([.percent(100)], total: 0) == [])
        #expect(WavePlanner.waveSizes([.count(1), .percent(10), .percent(50), .percent(100)], total: 5000) == [1, 499, 2000, 2500])
    }

    @Test func oneRackOneHostAtATime() {
        let inv = fleet(5, racks: 1)
        let layout = WavePlanner.plan(plan([.percent(100)], maxParallel: 10), inventory: inv, currentRelease: [:], unreachable: [:], customers: nil)
        #expect(layout.waves[0].batches.map(\.count) == [1, 1, 1, 1, 1])
    }
}
