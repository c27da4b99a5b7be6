import Testing
@testable import Basics
@testable import HealthGate

@Suite struct ProcParsersTests {
    @Test func realMeminfoOfThisMachine() {
        let m = MemInfo.parse(realMeminfo)
        #expect(m.memTotal == 24_684_092 * 1024)
        #expect(m.memAvailable == 24_266_880 * 1024)
        #expect(m.slab == 108_576 * 1024)
        #expect(m.sUnreclaim == 24_096 * 1024)
        let share = try! #require(m.sUnreclaimShare)
        #expect(abs(share - 24_096.0 / 24_684_092.0) < 1e-12)
    }

    @Test func realVmstatOfThisMachine() {
        #expect(VMStat.oomKill(in: realVmstat) == 0)
        // A neighbour with a common prefix must not be mistaken for the field.
        #expect(VMStat.value("nr_free_pages", in: realVmstat[...]) != nil)
        #expect(VMStat.value("oom_kil", in: realVmstat[...]) == nil)
    }

    @Test func meminfoWithMissingFields() {
        let m = MemInfo.parse("MemTotal:       1000 kB\nMemFree:         500 kB\n")
        #expect(m.memTotal == 1_024_000)
        #expect(m.sUnreclaim == nil)
        #expect(m.slab == nil)
        #expect(m.sUnreclaimShare == nil)
    }

    @Test func meminfoHugeValuesOverflowToNil() {
        // 2^64-1 kB cannot be expressed in bytes: nil, not a wrapped small number.
        let max = UInt64.max
        let m = MemInfo.parse("MemTotal: \(max) kB\nSUnreclaim: \(max / 1024) kB\nSlab: \(max / 1024 + 1) kB\n")
        #expect(m.memTotal == nil)
        #expect(m.sUnreclaim == (max / 1024) * 1024)
        #expect(m.slab == nil)
        // A value beyond UInt64 does not parse at all.
        #expect(MemInfo.parse("SUnreclaim: 18446744073709551616 kB").sUnreclaim == nil)
        #expect(VMStat.oomKill(in: "oom_kill \(max)\n") == max)
        #expect(VMStat.oomKill(in: "oom_kill 18446744073709551616\n") == nil)
    }

    @Test func meminfoTruncatedMidLine() {
        let text = "MemTotal:       24684092 kB\nSlab:             108576 kB\nSUnrecl"
        let m = MemInfo.parse(text)
        #expect(m.memTotal == 24_684_092 * 1024)
        #expect(m.slab == 108_576 * 1024)
        #expect(m.sUnreclaim == nil)
        // Cut inside the number or the unit: the number is not trusted.
        #expect(MemInfo.parse("SUnreclaim:        240").sUnreclaim == nil)
        #expect(MemInfo.parse("SUnreclaim:        24096 k").sUnreclaim == nil)
        #expect(MemInfo.parse("SUnreclaim").sUnreclaim == nil)
        #expect(MemInfo.parse("SUnreclaim:").sUnreclaim == nil)
        #expect(MemInfo.parse("SUnreclaim:   kB").sUnreclaim == nil)
    }

    @Test func crlfLineEndings() {
        let crlf = realMeminfo.replacingOccurrences(of: "\n", with: "\r\n")
        #expect(crlf.contains("\r\n"))
        #expect(MemInfo.parse(crlf) == MemInfo.parse(realMeminfo))
        #expect(VMStat.oomKill(in: "nr_free_pages 5\r\noom_kill 7\r\nnr_foo 1\r\n") == 7)
        #expect(Uptime.seconds(in: "123.45 678.90\r\n") == 123.45)
    }

    @Test func emptyAndGarbage() {
        #expect(MemInfo.parse("") == MemInfo())
        #expect(MemInfo.parse("\u{0}\u{1}binary\n:::\nkB kB\n") == MemInfo())
        #expect(VMStat.oomKill(in: "") == nil)
        #expect(VMStat.oomKill(in: "oom_kill -1\n") == nil)
        #expect(VMStat.oomKill(in: "oom_kill\n") == nil)
        #expect(Uptime.seconds(in: "") == nil)
        #expect(Uptime.seconds(in: "nan 1.0") == nil)
        #expect(Uptime.seconds(in: "-5 1.0") == nil)
    }

    @Test func meminfoSeparatorsOtherThanSpaces() {
        #expect(MemInfo.parse("SUnreclaim:\t4\tkB\n").sUnreclaim == 4096)
        #expect(MemInfo.parse("SUnreclaim: 4 MB\n").sUnreclaim == nil)
    }

    @Test func hostFactsParseMarksUnreadableFiles() {
        let out = """
        @@rollctl-file /proc/sys/kernel/osrelease
        6.1.0-13-amd64
        @@rollctl-file /proc/sys/kernel/random/boot_id
        3f2a9c1e-0000-4000-8000-000000000001
        @@rollctl-file /proc/uptime
        3600.50 7000.00
        @@rollctl-file /proc/meminfo
        MemTotal: 1000 kB
        SUnreclaim: 100 kB
        @@rollctl-file /proc/vmstat
        cat: /proc/vmstat: Permission denied
        @@rollctl-unreadable
        """
        let f = HostFacts.parse(out)
        #expect(f.release == "6.1.0-13-amd64")
        #expect(f.bootID == "3f2a9c1e-0000-4000-8000-000000000001")
        #expect(f.uptimeSeconds == 3600.5)
        #expect(f.memory.sUnreclaim == 102_400)
        #expect(f.oomKill == nil)
        #expect(f.unreadable["/proc/vmstat"] == "cat: /proc/vmstat: Permission denied")
        #expect(f.unreadable.count == 1)
    }

    @Test func hostFactsParseOfTruncatedOutput() {
        let f = HostFacts.parse("@@rollctl-file /proc/sys/kernel/osrelease\n6.1.0\n@@rollctl-file /proc/sys/kern")
        #expect(f.release == "6.1.0")
        #expect(f.bootID == nil)
        #expect(f.unreadable.keys.sorted() == ["/proc/meminfo", "/proc/sys/kernel/random/boot_id", "/proc/uptime", "/proc/vmstat"])
    }
}
