// Captured from the development machine (Debian 12, 2 cores, 23 GiB) on
// 2026-11-29 with `cat /proc/meminfo` and `cat /proc/vmstat`, verbatim.

let realMeminfo = #"""
MemTotal:       24684092 kB
MemFree:        23278348 kB
MemAvailable:   24266880 kB
Buffers:           14368 kB
Cached:          1148956 kB
SwapCached:            0 kB
Active:           794612 kB
Inactive:         423436 kB
Active(anon):       1552 kB
Inactive(anon):    62032 kB
Active(file):     793060 kB
Inactive(file):   361404 kB
Unevictable:       12340 kB
Mlocked:           11436 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Zswap:                 0 kB
Zswapped:              0 kB
Dirty:            111160 kB
Writeback:             0 kB
AnonPages:         67116 kB
Mapped:           128696 kB
Shmem:              8856 kB
KReclaimable:      84480 kB
Slab:             108576 kB
SReclaimable:      84480 kB
SUnreclaim:        24096 kB
KernelStack:        1796 kB
PageTables:         2624 kB
SecPageTables:         0 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:    12342044 kB
Committed_AS:     265136 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       14572 kB
VmallocChunk:          0 kB
Percpu:              664 kB
AnonHugePages:         0 kB
ShmemHugePages:        0 kB
ShmemPmdMapped:        0 kB
FileHugePages:     34816 kB
FilePmdMapped:         0 kB
Balloon:               0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:       26624 kB
DirectMap2M:     2070528 kB
DirectMap1G:    25165824 kB
"""#

let realVmstat = #"""
nr_free_pages 884086
nr_free_pages_blocks 802304
nr_zone_inactive_anon 15506
nr_zone_active_anon 388
nr_zone_inactive_file 90351
nr_zone_active_file 198265
nr_zone_unevictable 3085
nr_zone_write_pending 27790
nr_mlock 2859
nr_zspages 0
nr_free_cma 0
numa_hit 5423642
numa_miss 0
numa_foreign 0
numa_interleave 1125
numa_local 5423642
numa_other 0
nr_inactive_anon 15508
nr_active_anon 388
nr_inactive_file 90351
nr_active_file 198265
nr_unevictable 3085
nr_slab_reclaimable 21120
nr_slab_unreclaimable 6024
nr_isolated_anon 0
nr_isolated_file 0
workingset_nodes 5378
workingset_refault_anon 0
workingset_refault_file 213922
workingset_activate_anon 0
workingset_activate_file 112446
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 0
nr_anon_pages 16779
nr_mapped 32174
nr_file_pages 290831
nr_dirty 27790
nr_writeback 0
nr_shmem 2214
nr_shmem_hugepages 0
nr_shmem_pmdmapped 0
nr_file_hugepages 17
nr_file_pmdmapped 0
nr_anon_transparent_hugepages 0
nr_vmscan_write 0
nr_vmscan_immediate_reclaim 1512
nr_dirtied 237872
nr_written 159479
nr_throttled_written 0
nr_kernel_misc_reclaimable 0
nr_foll_pin_acquired 0
nr_foll_pin_released 0
nr_kernel_stack 1796
nr_page_table_pages 656
nr_sec_page_table_pages 0
nr_iommu_pages 0
nr_swapcached 0
pgpromote_success 0
pgpromote_candidate 0
pgpromote_candidate_nrl 0
pgdemote_kswapd 0
pgdemote_direct 0
pgdemote_khugepaged 0
pgdemote_proactive 0
nr_hugetlb 0
nr_balloon_pages 0
nr_kernel_file_pages 0
nr_dirty_threshold 1215165
nr_dirty_background_threshold 606840
nr_memmap_pages 0
nr_memmap_boot_pages 98304
pgpgin 2059229
pgpgout 654076
pswpin 0
pswpout 0
pgalloc_dma 0
pgalloc_dma32 0
pgalloc_normal 5652876
pgalloc_movable 0
pgalloc_device 0
allocstall_dma 0
allocstall_dma32 0
allocstall_normal 0
allocstall_movable 0
allocstall_device 0
pgskip_dma 0
pgskip_dma32 0
pgskip_normal 0
pgskip_movable 0
pgskip_device 0
pgfree 6545551
pgactivate 197832
pgdeactivate 0
pglazyfree 0
pgfault 6073339
pgmajfault 2271
pglazyfreed 0
pgrefill 0
pgreuse 295407
pgsteal_kswapd 0
pgsteal_direct 0
pgsteal_khugepaged 0
pgsteal_proactive 0
pgscan_kswapd 0
pgscan_direct 0
pgscan_khugepaged 0
pgscan_proactive 0
pgscan_direct_throttle 0
pgscan_anon 0
pgscan_file 0
pgsteal_anon 0
pgsteal_file 0
zone_reclaim_success 0
zone_reclaim_failed 0
pginodesteal 0
slabs_scanned 291
kswapd_inodesteal 0
kswapd_low_wmark_hit_quickly 0
kswapd_high_wmark_hit_quickly 0
pageoutrun 0
pgrotated 1440
drop_pagecache 1
drop_slab 2
oom_kill 0
numa_pte_updates 0
numa_huge_pte_updates 0
numa_hint_faults 0
numa_hint_faults_local 0
numa_pages_migrated 0
pgmigrate_success 0
pgmigrate_fail 0
thp_migration_success 0
thp_migration_fail 0
thp_migration_split 0
compact_migrate_scanned 0
compact_free_scanned 0
compact_isolated 0
compact_stall 0
compact_fail 0
compact_success 0
compact_daemon_wake 0
compact_daemon_migrate_scanned 0
compact_daemon_free_scanned 0
htlb_buddy_alloc_success 0
htlb_buddy_alloc_fail 0
unevictable_pgs_culled 26164
unevictable_pgs_scanned 0
unevictable_pgs_rescued 23079
unevictable_pgs_mlocked 26142
unevictable_pgs_munlocked 23283
unevictable_pgs_cleared 0
unevictable_pgs_stranded 0
thp_fault_alloc 0
thp_fault_fallback 0
thp_fault_fallback_charge 0
thp_collapse_alloc 0
thp_collapse_alloc_failed 0
thp_file_alloc 0
thp_file_fallback 0
thp_file_fallback_charge 0
thp_file_mapped 124
thp_split_page 0
thp_split_page_failed 0
thp_deferred_split_page 0
thp_underused_split_page 0
thp_split_pmd 0
thp_scan_exceed_none_pte 0
thp_scan_exceed_swap_pte 0
thp_scan_exceed_share_pte 0
thp_split_pud 0
thp_zero_page_alloc 0
thp_zero_page_alloc_failed 0
thp_swpout 0
thp_swpout_fallback 0
balloon_inflate 0
balloon_deflate 0
balloon_migrate 0
swap_ra 0
swap_ra_hit 0
swpin_zero 0
swpout_zero 0
ksm_swpin_copy 0
cow_ksm 0
zswpin 0
zswpout 0
zswpwb 0
direct_map_level2_splits 3
direct_map_level3_splits 0
direct_map_level2_collapses 0
direct_map_level3_collapses 0
nr_unstable 0
"""#
