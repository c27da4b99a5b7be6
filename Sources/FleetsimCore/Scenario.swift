import Foundation
import Yams

/// How the test site answers.
public enum SiteMode: String, Codable, Sendable, CaseIterable {
    case ok, refuse, reset, timeout, http500
}

/// Behaviour of a host while it runs a kernel. Every field optional so layers can be merged:
/// kernel defaults <- host-wide overrides <- host+kernel overrides <- live `set` overrides.
public struct Behaviour: Codable, Sendable, Equatable {
    public var sunreclaimBase: Double?         // bytes
    public var sunreclaimGrowthPerMin: Double? // bytes per minute
    public var sunreclaimNoise: Double?        // bytes, +-
    public var oomPerMin: Double?
    public var site: SiteMode?
    public var siteFailFraction: Double?
    public var siteFailAs: SiteMode?
    public var bootDelay: Double?              // seconds
    public var bootJitter: Double?             // seconds
    public var neverReturns: Bool?
    public var panic: Bool?
    public var panicDelay: Double?             // seconds a panicking kernel takes before the machine resets

    public init() {}

    /// `other`'s set fields win.
    public func merged(with other: Behaviour?) -> Behaviour {
        guard let o = other else { return self }
        var r = self
        r.sunreclaimBase = o.sunreclaimBase ?? r.sunreclaimBase
        r.sunreclaimGrowthPerMin = o.sunreclaimGrowthPerMin ?? r.sunreclaimGrowthPerMin
        r.sunreclaimNoise = o.sunreclaimNoise ?? r.sunreclaimNoise
        r.oomPerMin = o.oomPerMin ?? r.oomPerMin
        r.site = o.site ?? r.site
        r.siteFailFraction = o.siteFailFraction ?? r.siteFailFraction
        r.siteFailAs = o.siteFailAs ?? r.siteFailAs
        r.bootDelay = o.bootDelay ?? r.bootDelay
        r.bootJitter = o.bootJitter ?? r.bootJitter
        r.neverReturns = o.neverReturns ?? r.neverReturns
        r.panic = o.panic ?? r.panic
        r.panicDelay = o.panicDelay ?? r.panicDelay
        return r
    }

    /// Sets one key from its text form (scenario YAML scalar or `fleetsim set key=value`).
    /// Returns false when the key is not a behaviour key. Throws on a bad value.
    public mutating func set(key: String, value: String) throws -> Bool {
        func dur() throws -> Double {
            guard let d = parseDuration(value) else { throw FleetsimError("\(key): '\(value)' is not a duration (e.g. 2s, 500ms, 1m)", exitCode: 2) }
            return d
        }
        func size() throws -> Double {
            guard let d = parseSize(value) else { throw FleetsimError("\(key): '\(value)' is not a size (e.g. 300MiB)", exitCode: 2) }
            return d
        }
        func num() throws -> Double {
            guard let d = Double(value), d >= 0 else { throw FleetsimError("\(key): '\(value)' is not a non-negative number", exitCode: 2) }
            return d
        }
        func bool() throws -> Bool {
            switch value.lowercased() {
            case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0": return false
            default: throw FleetsimError("\(key): '\(value)' is not true/false", exitCode: 2)
            }
        }
        func mode() throws -> SiteMode {
            guard let m = SiteMode(rawValue: value.lowercased()) else {
                throw FleetsimError("\(key): '\(value)' is not one of \(SiteMode.allCases.map(\.rawValue).joined(separator: ", "))", exitCode: 2)
            }
            return m
        }
        switch key {
        case "sunreclaim_base", "sunreclaim": sunreclaimBase = try size()
        case "sunreclaim_growth_per_min", "sunreclaim_growth": sunreclaimGrowthPerMin = try size()
        case "sunreclaim_noise": sunreclaimNoise = try size()
        case "oom_per_min": oomPerMin = try num()
        case "site": site = try mode()
        case "site_fail_fraction":
            let f = try num()
            guard f <= 1 else { throw FleetsimError("site_fail_fraction must be within 0...1", exitCode: 2) }
            siteFailFraction = f
        case "site_fail_as":
            let m = try mode()
            guard m != .ok && m != .refuse else { throw FleetsimError("site_fail_as: expected reset, http500 or timeout", exitCode: 2) }
            siteFailAs = m
        case "boot_delay": bootDelay = try dur()
        case "boot_jitter": bootJitter = try dur()
        case "never_returns", "never_return": neverReturns = try bool()
        case "panic": panic = try bool()
        case "panic_delay": panicDelay = try dur()
        default: return false
        }
        return true
    }

    public static let keys = [
        "sunreclaim_base", "sunreclaim_growth_per_min", "sunreclaim_noise", "oom_per_min", "site",
        "site_fail_fraction", "site_fail_as", "boot_delay", "boot_jitter", "never_returns", "panic", "panic_delay",
    ]
}

public struct KernelSpec: Codable, Sendable {
    public var release: String
    public var behaviour: Behaviour
}

public struct HostSpec: Codable, Sendable {
    public var behaviour: Behaviour?                  // host-wide overrides
    public var kernels: [String: Behaviour] = [:]     // host+kernel overrides
    public var initialKernel: String?
    public var bootFull: Bool?
    /// The host's distribution (overrides `up --flavours`).
    public var flavour: Flavour?
}

/// A parsed scenario. See docs/fleetsim.md for the YAML format.
public struct Scenario: Codable, Sendable {
    public var memTotal: Double = 16 * 1024 * 1024 * 1024
    public var initialKernel: String = "6.1.0-17-hosting"
    public var initialUptime: Double = 0
    /// What boots when next_entry names no menu entry: "saved" (saved_entry, else entry 0) or
    /// "first" (entry 0, the newest kernel on Debian — what real GRUB does).
    public var invalidEntryBoots: String = "saved"
    public var defaults: Behaviour
    public var kernels: [String: KernelSpec] = [:]
    public var hosts: [String: HostSpec] = [:]

    public static let builtinDefaults: Behaviour = {
        var b = Behaviour()
        b.sunreclaimBase = 250 * 1024 * 1024
        b.sunreclaimGrowthPerMin = 0
        b.sunreclaimNoise = 1024 * 1024
        b.oomPerMin = 0
        b.site = .ok
        b.siteFailFraction = 0
        b.siteFailAs = .reset
        b.bootDelay = 2
        b.bootJitter = 0.5
        b.neverReturns = false
        b.panic = false
        b.panicDelay = 5
        return b
    }()

    public init(defaults: Behaviour = Scenario.builtinDefaults) { self.defaults = defaults }

    /// Effective behaviour of `host` running `release`, before live overrides.
    public func behaviour(host: String, release: String) -> Behaviour {
        var b = defaults
        b = b.merged(with: kernels[release]?.behaviour)
        b = b.merged(with: hosts[host]?.behaviour)
        b = b.merged(with: hosts[host]?.kernels[release])
        return b
    }

    public func initialKernel(host: String) -> String { hosts[host]?.initialKernel ?? initialKernel }

    /// The built-in scenario: the socket.c bind() leak story.
    public static let builtinYAML = """
    # fleetsim built-in scenario: the socket.c bind() leak.
    mem_total: 16GiB
    initial_kernel: 6.1.0-17-hosting
    defaults:
      boot_delay: 2s
      boot_jitter: 0.5s
      panic_delay: 5s
      sunreclaim_noise: 1MiB
      site: ok
    kernels:
      6.1.0-17-hosting:     # current fleet kernel, in-house socket.c bind() patch: leaks
        sunreclaim_base: 300MiB
        sunreclaim_growth_per_min: 40MiB
      6.1.0-18-hosting:     # first "fix": still leaks
        sunreclaim_base: 300MiB
        sunreclaim_growth_per_min: 38MiB
      6.1.0-19-hosting:     # the fixed kernel: flat
        sunreclaim_base: 250MiB
        sunreclaim_growth_per_min: 0
      6.1.0-20-hosting:     # does not boot
        panic: true
    """

    public static func builtin() -> Scenario {
        // The built-in text is ours; failing to parse it is a programming error.
        return try! parse(yaml: builtinYAML, source: "<built-in scenario>")
    }

    public static func parse(yaml: String, source: String) throws -> Scenario {
        let node: Any?
        do { node = try Yams.load(yaml: yaml) } catch {
            throw FleetsimError("\(source): invalid YAML: \(error)", exitCode: 2)
        }
        guard let top = asMap(node) else {
            throw FleetsimError("\(source): expected a mapping at the top", exitCode: 2)
        }
        var sc = Scenario()
        func str(_ v: Any) -> String {
            if let b = v as? Bool { return b ? "true" : "false" }
            return "\(v)"
        }
        func behaviour(_ v: Any?, at path: String, extra: Set<String> = []) throws -> (Behaviour, [String: Any]) {
            var b = Behaviour()
            var rest: [String: Any] = [:]
            guard let v else { return (b, rest) }
            guard let m = asMap(v) else {
                if v is NSNull { return (b, rest) }
                throw FleetsimError("\(source): \(path): expected a mapping", exitCode: 2)
            }
            for (k, val) in m {
                if extra.contains(k) { rest[k] = val; continue }
                do {
                    if !(try b.set(key: k, value: str(val))) {
                        throw FleetsimError("unknown key '\(k)' (known: \((Behaviour.keys + extra.sorted()).joined(separator: ", ")))", exitCode: 2)
                    }
                } catch let e as FleetsimError {
                    throw FleetsimError("\(source): \(path).\(k): \(e.message)", exitCode: 2)
                }
            }
            return (b, rest)
        }
        for (k, v) in top {
            switch k {
            case "mem_total":
                guard let s = parseSize(str(v)) else { throw FleetsimError("\(source): mem_total: not a size", exitCode: 2) }
                sc.memTotal = s
            case "initial_kernel": sc.initialKernel = str(v)
            case "invalid_entry_boots":
                guard ["saved", "first"].contains(str(v)) else { throw FleetsimError("\(source): invalid_entry_boots: expected saved or first", exitCode: 2) }
                sc.invalidEntryBoots = str(v)
            case "initial_uptime":
                guard let d = parseDuration(str(v)) else { throw FleetsimError("\(source): initial_uptime: not a duration", exitCode: 2) }
                sc.initialUptime = d
            case "defaults":
                sc.defaults = builtinDefaults.merged(with: try behaviour(v, at: "defaults").0)
            case "kernels":
                guard let m = asMap(v) else { throw FleetsimError("\(source): kernels: expected a mapping of release -> behaviour", exitCode: 2) }
                for (rel, kv) in m {
                    sc.kernels[rel] = KernelSpec(release: rel, behaviour: try behaviour(kv, at: "kernels.\(rel)").0)
                }
            case "hosts":
                guard let m = asMap(v) else { throw FleetsimError("\(source): hosts: expected a mapping of host name -> settings", exitCode: 2) }
                for (name, hv) in m {
                    let (b, rest) = try behaviour(hv, at: "hosts.\(name)", extra: ["kernels", "initial_kernel", "boot_full", "flavour"])
                    var hs = HostSpec()
                    hs.behaviour = b
                    if let ik = rest["initial_kernel"] { hs.initialKernel = str(ik) }
                    if let bf = rest["boot_full"] { hs.bootFull = (str(bf) == "true") }
                    if let fl = rest["flavour"] {
                        guard let f = Flavour(rawValue: str(fl)) else {
                            throw FleetsimError("\(source): hosts.\(name).flavour: '\(str(fl))' is not a flavour (known: \(Flavour.allCases.map(\.rawValue).joined(separator: ", ")))", exitCode: 2)
                        }
                        hs.flavour = f
                    }
                    if let ks = rest["kernels"] {
                        guard let km = asMap(ks) else { throw FleetsimError("\(source): hosts.\(name).kernels: expected a mapping", exitCode: 2) }
                        for (rel, kv) in km { hs.kernels[rel] = try behaviour(kv, at: "hosts.\(name).kernels.\(rel)").0 }
                    }
                    sc.hosts[name] = hs
                }
            default:
                throw FleetsimError("\(source): unknown top-level key '\(k)' (known: mem_total, initial_kernel, initial_uptime, invalid_entry_boots, defaults, kernels, hosts)", exitCode: 2)
            }
        }
        if sc.kernels[sc.initialKernel] == nil {
            sc.kernels[sc.initialKernel] = KernelSpec(release: sc.initialKernel, behaviour: Behaviour())
        }
        for (name, h) in sc.hosts {
            if let ik = h.initialKernel, sc.kernels[ik] == nil {
                throw FleetsimError("\(source): hosts.\(name).initial_kernel: \(ik) is not in kernels", exitCode: 2)
            }
        }
        return sc
    }
}

/// A YAML mapping as a string-keyed dictionary (Yams gives `[AnyHashable: Any]`).
func asMap(_ v: Any?) -> [String: Any]? {
    if let m = v as? [String: Any] { return m }
    if let m = v as? [AnyHashable: Any] {
        var out: [String: Any] = [:]
        for (k, val) in m { out["\(k.base)"] = val }
        return out
    }
    return nil
}
