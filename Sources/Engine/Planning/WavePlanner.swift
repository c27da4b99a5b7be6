import RolloutConfig
/// A selected host the rollout will not touch, and why.
public struct SkippedHost: Sendable, Equatable {
    public var host: InventoryHost
    public var reason: String
    public init(host: InventoryHost, reason: String) {
        self.host = host
        self.reason = reason
    }
}

/// One wave: hosts rebooted batch after batch; a batch reboots at once.
public struct PlannedWave: Sendable {
    /// 1 is the canary.
    public var number: Int
    public var batches: [[InventoryHost]]
    public var hosts: [InventoryHost] { batches.flatMap { $0 } }
    public init(number: Int, batches: [[InventoryHost]]) {
        self.number = number
        self.batches = batches
    }
}

/// Every selected host either in exactly one wave or in `skipped`.
public struct RolloutLayout: Sendable {
    public var waves: [PlannedWave]
    /// Already on the target, excluded, unreachable: each with its reason.
    public var skipped: [SkippedHost]
    public init(waves: [PlannedWave], skipped: [SkippedHost]) {
        self.waves = waves
        self.skipped = skipped
    }
}

/// Cuts the selected fleet into waves and batches. Pure and deterministic: the
/// same plan, inventory and facts give the same layout.
///
/// - Hosts are ordered by interleaving failure domains (the largest domain
///   first, then by name; hosts in inventory order within a domain), so the
///   canary and the early waves sample different racks rather than one.
/// - `waves.sizes` are cumulative targets over the hosts to roll: `[1, 25%, 100%]`
///   is one host, then up to a quarter done, then the rest. Every wave gets at
///   least one host; a target already reached gives no empty wave.
/// - Inside a wave, hosts go first-fit into batches of at most `maxParallel`,
///   never two of one failure domain, nor (with `separateCustomers`) two that
///   share a customer.
public enum WavePlanner {
    /// currentRelease: host name -> release read from the host (missing = unknown,
    /// e.g. offline planning); unreachable: host name -> reason.
    public static func plan(_ plan: Plan, inventory: Inventory, currentRelease: [String: String],
                            unreachable: [String: String], customers: Customers?) -> RolloutLayout {
        let excluded = Set(plan.selection.exclude)
        var skipped: [SkippedHost] = []
        var eligible: [InventoryHost] = []
        for host in PlanLoader.selectedHosts(plan, inventory: inventory) {
            if excluded.contains(host.name) {
                skipped.append(SkippedHost(host: host, reason: "excluded by the plan (select.exclude)"))
            } else if let why = unreachable[host.name] {
                skipped.append(SkippedHost(host: host, reason: "unreachable: \(why)"))
            } else if currentRelease[host.name] == plan.kernel.release {
                skipped.append(SkippedHost(host: host, reason: "already on \(plan.kernel.release)"))
            } else {
                eligible.append(host)
            }
        }
        let ordered = interleave(eligible, domain: plan.waves.failureDomain)
        let sizes = waveSizes(plan.waves.sizes, total: ordered.count)
        var waves: [PlannedWave] = []
        var start = 0
        for size in sizes {
            let hosts = Array(ordered[start..<(start + size)])
            start += size
            let batches = batch(hosts, maxParallel: plan.waves.maxParallel, domain: plan.waves.failureDomain,
                                customers: plan.waves.separateCustomers ? customers : nil)
            waves.append(PlannedWave(number: waves.count + 1, batches: batches))
        }
        return RolloutLayout(waves: waves, skipped: skipped)
    }

    /// The failure domain of a host: its label value, or the host itself when it lacks the label.
    static func domainKey(_ host: InventoryHost, _ label: String?) -> String {
        guard let label else { return "host:" + host.name }
        return host.labels[label].map { "label:" + $0 } ?? "host:" + host.name
    }

    /// Round-robin over failure domains, largest first.
    static func interleave(_ hosts: [InventoryHost], domain: String?) -> [InventoryHost] {
        guard domain != nil else { return hosts }
        var groups: [String: [InventoryHost]] = [:]
        var order: [String] = []
        for h in hosts {
            let k = domainKey(h, domain)
            if groups[k] == nil { order.append(k) }
            groups[k, default: []].append(h)
        }
        let keys = order.sorted { (groups[$0]!.count, $1) > (groups[$1]!.count, $0) }
        var out: [InventoryHost] = []
        out.reserveCapacity(hosts.count)
        var round = 0
        var active = keys
        while !active.isEmpty {
            var still: [String] = []
            for k in active {
                let g = groups[k]!
                if round < g.count { out.append(g[round]) }
                if round + 1 < g.count { still.append(k) }
            }
            active = still
            round += 1
        }
        return out
    }

    /// Hosts per wave for `total` hosts to roll: cumulative targets, each wave at least one host.
    public static func waveSizes(_ sizes: [WaveSize], total: Int) -> [Int] {
        guard total > 0 else { return [] }
        var out: [Int] = []
        var done = 0
        for (i, s) in sizes.enumerated() {
            guard done < total else { break }
            var target: Int
            switch s {
            case .count(let n): target = n
            case .percent(let p): target = Int((Double(total) * p / 100).rounded(.up))
            }
            if i == sizes.count - 1 { target = total }
            target = min(total, max(done + 1, target))
            out.append(target - done)
            done = target
        }
        if done < total { out.append(total - done) }
        return out
    }

    /// First-fit into batches that respect the parallelism, domain and customer limits.
    static func batch(_ hosts: [InventoryHost], maxParallel: Int, domain: String?, customers: Customers?) -> [[InventoryHost]] {
        struct Open { var hosts: [InventoryHost] = []; var domains = Set<String>(); var customers = Set<String>() }
        var batches: [Open] = []
        var firstOpen = 0
        var next: [String: Int] = [:]
        let limit = max(1, maxParallel)
        for h in hosts {
            let d = domainKey(h, domain)
            let ids = Set(customers?.idsByHost[h.name] ?? [])
            while firstOpen < batches.count && batches[firstOpen].hosts.count >= limit { firstOpen += 1 }
            var placed = false
            // Batches before next[d] are full or hold domain d: both only ever stay so.
            var skipTo = max(firstOpen, next[d] ?? 0)
            var i = skipTo
            defer { next[d] = skipTo }
            while i < batches.count {
                let full = batches[i].hosts.count >= limit, taken = batches[i].domains.contains(d)
                if (full || taken) && i == skipTo { skipTo = i + 1 }
                if !full && !taken && batches[i].customers.isDisjoint(with: ids) {
                    batches[i].hosts.append(h)
                    batches[i].domains.insert(d)
                    batches[i].customers.formUnion(ids)
                    placed = true
                    break
                }
                i += 1
            }
            if !placed {
                batches.append(Open(hosts: [h], domains: [d], customers: ids))
            }
        }
        return batches.map(\.hosts)
    }
}
