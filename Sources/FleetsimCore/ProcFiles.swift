import Foundation

/// The numbers a host's fake /proc files are rendered from.
public struct ProcSnapshot: Sendable {
    public var memTotal: Double      // bytes
    public var sunreclaim: Double    // bytes
    public var oomKill: Int
    public var uptime: Double        // seconds
    public var seed: UInt64          // per host, keeps the "other" numbers stable per host
    public init(memTotal: Double, sunreclaim: Double, oomKill: Int, uptime: Double, seed: UInt64) {
        self.memTotal = memTotal; self.sunreclaim = sunreclaim; self.oomKill = oomKill; self.uptime = uptime; self.seed = seed
    }
}

public enum ProcFiles {
    static func kb(_ bytes: Double) -> Int { max(0, Int(bytes / 1024)) }

    /// MemTotal and SUnreclaim as meminfo prints them (kB). The node metrics export these same
    /// numbers (times 1024, as node_exporter does), so both views of a snapshot agree exactly.
    public static func memTotalKB(_ s: ProcSnapshot) -> Int { kb(memTotalBytes(s)) }
    public static func sunreclaimKB(_ s: ProcSnapshot) -> Int { kb(s.sunreclaim) }
    static func memTotalBytes(_ s: ProcSnapshot) -> Double { (s.memTotal * 0.976).rounded() }

    /// One meminfo line as the kernel prints it: label padded to 16 columns, value right-aligned in 8, " kB".
    static func line(_ label: String, _ valueKB: Int, unit: Bool = true) -> String {
        var out = label
        out += ":"
        let v = String(valueKB)
        let pad = max(0, 16 - label.utf8.count - 1) + max(0, 8 - v.utf8.count)
        out += String(repeating: " ", count: pad)
        out += v
        out += unit ? " kB\n" : "\n"
        return out
    }

    public static func meminfo(_ s: ProcSnapshot) -> String {
        var rng = SeededRandom(seed: s.seed)
        let MiB = 1024.0 * 1024
        let total = memTotalBytes(s)
        let jitter = { (base: Double, spread: Double, r: inout SeededRandom) -> Double in
            base + Double.random(in: -spread...spread, using: &r)
        }
        let anon = jitter(3200 * MiB, 400 * MiB, &rng) + min(s.uptime, 3600) / 3600 * 300 * MiB
        let buffers = jitter(310 * MiB, 40 * MiB, &rng)
        let sreclaimable = jitter(420 * MiB, 60 * MiB, &rng)
        let kernelStack = jitter(18 * MiB, 2 * MiB, &rng)
        let pageTables = jitter(64 * MiB, 8 * MiB, &rng)
        let percpu = 9 * MiB
        let shmem = jitter(180 * MiB, 20 * MiB, &rng)
        let other = 220 * MiB
        // Page cache grows with uptime but gives way to unreclaimable slab.
        let wantCache = jitter(5200 * MiB, 500 * MiB, &rng) + min(s.uptime, 7200) / 7200 * 1500 * MiB
        let fixed = anon + buffers + sreclaimable + kernelStack + pageTables + percpu + other + s.sunreclaim
        let minFree = 96 * MiB
        let cached = max(120 * MiB, min(wantCache, total - fixed - minFree))
        let free = max(minFree * 0.7, total - fixed - cached)
        let available = free + cached * 0.85 + sreclaimable * 0.6 + buffers
        let slab = sreclaimable + s.sunreclaim
        let activeAnon = anon * 0.62, inactiveAnon = anon * 0.38 + shmem
        let activeFile = cached * 0.55, inactiveFile = cached * 0.45 + buffers
        let committed = anon * 1.9 + shmem
        var out = ""
        out += line("MemTotal", memTotalKB(s))
        out += line("MemFree", kb(free))
        out += line("MemAvailable", kb(available))
        out += line("Buffers", kb(buffers))
        out += line("Cached", kb(cached))
        out += line("SwapCached", 0)
        out += line("Active", kb(activeAnon + activeFile))
        out += line("Inactive", kb(inactiveAnon + inactiveFile))
        out += line("Active(anon)", kb(activeAnon))
        out += line("Inactive(anon)", kb(inactiveAnon))
        out += line("Active(file)", kb(activeFile))
        out += line("Inactive(file)", kb(inactiveFile))
        out += line("Unevictable", 0)
        out += line("Mlocked", 0)
        out += line("SwapTotal", 0)
        out += line("SwapFree", 0)
        out += line("Zswap", 0)
        out += line("Zswapped", 0)
        out += line("Dirty", kb(jitter(2 * MiB, 1.5 * MiB, &rng)))
        out += line("Writeback", 0)
        out += line("AnonPages", kb(anon))
        out += line("Mapped", kb(jitter(610 * MiB, 50 * MiB, &rng)))
        out += line("Shmem", kb(shmem))
        out += line("KReclaimable", kb(sreclaimable))
        out += line("Slab", kb(slab))
        out += line("SReclaimable", kb(sreclaimable))
        out += line("SUnreclaim", sunreclaimKB(s))
        out += line("KernelStack", kb(kernelStack))
        out += line("PageTables", kb(pageTables))
        out += line("NFS_Unstable", 0)
        out += line("Bounce", 0)
        out += line("WritebackTmp", 0)
        out += line("CommitLimit", kb(total / 2))
        out += line("Committed_AS", kb(committed))
        out += line("VmallocTotal", 34_359_738_367)
        out += line("VmallocUsed", kb(jitter(48 * MiB, 4 * MiB, &rng)))
        out += line("VmallocChunk", 0)
        out += line("Percpu", kb(percpu))
        out += line("HardwareCorrupted", 0)
        out += line("AnonHugePages", kb(jitter(400 * MiB, 100 * MiB, &rng)))
        out += line("ShmemHugePages", 0)
        out += line("ShmemPmdMapped", 0)
        out += line("FileHugePages", 0)
        out += line("FilePmdMapped", 0)
        out += "HugePages_Total:       0\n"
        out += "HugePages_Free:        0\n"
        out += "HugePages_Rsvd:        0\n"
        out += "HugePages_Surp:        0\n"
        out += line("Hugepagesize", 2048)
        out += line("Hugetlb", 0)
        out += line("DirectMap4k", kb(380 * MiB))
        out += line("DirectMap2M", kb(total * 0.6))
        out += line("DirectMap1G", kb((total * 0.42 / 1_073_741_824).rounded(.down) * 1_073_741_824))
        return out
    }

    public static func vmstat(_ s: ProcSnapshot) -> String {
        let page = 4096.0
        let up = max(s.uptime, 0)
        let sunrPages = Int(s.sunreclaim / page)
        let rate = { (perSec: Double) -> Int in Int(perSec * up) }
        let rows: [(String, Int)] = [
            ("nr_free_pages", 310_000), ("nr_zone_inactive_anon", 310_112), ("nr_zone_active_anon", 508_224),
            ("nr_zone_inactive_file", 602_321), ("nr_zone_active_file", 736_210), ("nr_zone_unevictable", 0),
            ("nr_zone_write_pending", 97), ("nr_mlock", 0), ("nr_bounce", 0), ("nr_zspages", 0), ("nr_free_cma", 0),
            ("numa_hit", rate(5200)), ("numa_miss", 0), ("numa_foreign", 0), ("numa_interleave", 2114),
            ("numa_local", rate(5200)), ("numa_other", 0),
            ("nr_inactive_anon", 310_112), ("nr_active_anon", 508_224), ("nr_inactive_file", 602_321),
            ("nr_active_file", 736_210), ("nr_unevictable", 0),
            ("nr_slab_reclaimable", 107_520), ("nr_slab_unreclaimable", sunrPages),
            ("nr_isolated_anon", 0), ("nr_isolated_file", 0),
            ("workingset_nodes", 1204), ("workingset_refault_anon", 0), ("workingset_refault_file", rate(0.4)),
            ("workingset_activate_anon", 0), ("workingset_activate_file", rate(0.2)),
            ("workingset_restore_anon", 0), ("workingset_restore_file", rate(0.1)), ("workingset_nodereclaim", 0),
            ("nr_anon_pages", 819_200), ("nr_mapped", 156_160), ("nr_file_pages", 1_460_000), ("nr_dirty", 97),
            ("nr_writeback", 0), ("nr_writeback_temp", 0), ("nr_shmem", 46_080), ("nr_shmem_hugepages", 0),
            ("nr_shmem_pmdmapped", 0), ("nr_file_hugepages", 0), ("nr_file_pmdmapped", 0),
            ("nr_anon_transparent_hugepages", 200), ("nr_vmscan_write", 0), ("nr_vmscan_immediate_reclaim", 0),
            ("nr_dirtied", rate(40)), ("nr_written", rate(38)), ("nr_throttled_written", 0),
            ("nr_kernel_misc_reclaimable", 0), ("nr_foll_pin_acquired", 0), ("nr_foll_pin_released", 0),
            ("nr_kernel_stack", 18_432), ("nr_page_table_pages", 16_384), ("nr_sec_page_table_pages", 0),
            ("nr_swapcached", 0), ("nr_dirty_threshold", 412_000), ("nr_dirty_background_threshold", 205_000),
            ("pgpgin", rate(120)), ("pgpgout", rate(160)), ("pswpin", 0), ("pswpout", 0),
            ("pgalloc_dma", 0), ("pgalloc_dma32", rate(300)), ("pgalloc_normal", rate(5000)), ("pgalloc_movable", 0),
            ("pgfree", rate(5400)), ("pgactivate", rate(30)), ("pgdeactivate", 0), ("pglazyfree", 0),
            ("pgfault", rate(4200)), ("pgmajfault", rate(0.3)), ("pglazyfreed", 0), ("pgrefill", 0),
            ("pgreuse", rate(700)), ("pgsteal_kswapd", 0), ("pgsteal_direct", 0), ("pgscan_kswapd", 0),
            ("pgscan_direct", 0), ("pgscan_direct_throttle", 0), ("pginodesteal", 0), ("slabs_scanned", 0),
            ("kswapd_inodesteal", 0), ("kswapd_low_wmark_hit_quickly", 0), ("kswapd_high_wmark_hit_quickly", 0),
            ("pageoutrun", 0), ("pgrotated", 0), ("drop_pagecache", 0), ("drop_slab", 0),
            ("oom_kill", s.oomKill),
            ("numa_pte_updates", 0), ("numa_huge_pte_updates", 0), ("numa_hint_faults", 0),
            ("numa_hint_faults_local", 0), ("numa_pages_migrated", 0), ("pgmigrate_success", 0), ("pgmigrate_fail", 0),
            ("compact_migrate_scanned", 0), ("compact_free_scanned", 0), ("compact_isolated", 0), ("compact_stall", 0),
            ("compact_fail", 0), ("compact_success", 0), ("htlb_buddy_alloc_success", 0), ("htlb_buddy_alloc_fail", 0),
            ("unevictable_pgs_culled", 0), ("unevictable_pgs_scanned", 0), ("unevictable_pgs_rescued", 0),
            ("unevictable_pgs_mlocked", 0), ("unevictable_pgs_munlocked", 0), ("unevictable_pgs_cleared", 0),
            ("unevictable_pgs_stranded", 0), ("thp_fault_alloc", rate(0.05)), ("thp_fault_fallback", 0),
            ("thp_collapse_alloc", 0), ("thp_split_page", 0), ("thp_zero_page_alloc", 1), ("balloon_inflate", 0),
            ("balloon_deflate", 0), ("balloon_migrate", 0), ("swap_ra", 0), ("swap_ra_hit", 0),
            ("direct_map_level2_splits", 120), ("direct_map_level3_splits", 4), ("nr_unstable", 0),
        ]
        return rows.map { "\($0.0) \($0.1)\n" }.joined()
    }

    public static func uptime(_ s: ProcSnapshot, cpus: Double = 2) -> String {
        String(format: "%.2f %.2f\n", s.uptime, s.uptime * cpus * 0.93)
    }
}
