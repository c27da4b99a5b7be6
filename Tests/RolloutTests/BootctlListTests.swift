import Foundation
import Testing
@testable import Engine

/// `bootctl list --json=short` as systemd 257 (Debian 13) prints it on a host with two kernels
/// installed by kernel-install (entry token: the machine id), the running one selected, no
/// `LoaderEntryDefault` (the newest entry is the default), and systemd-boot's automatic entry
/// for the firmware setup. One line; keys in `boot_entry_to_json`'s order.
let debian13BootctlList = #"[{"type":"type1","source":"esp","id":"0123456789abcdef0123456789abcdef-6.12.48+deb13-amd64.conf","path":"/boot/efi/loader/entries/0123456789abcdef0123456789abcdef-6.12.48+deb13-amd64.conf","root":"/boot/efi","title":"Debian GNU/Linux 13 (trixie)","showTitle":"Debian GNU/Linux 13 (trixie)","sortKey":"debian","version":"6.12.48+deb13-amd64","machineId":"0123456789abcdef0123456789abcdef","options":"root=UUID=6f1d2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b ro quiet systemd.machine_id=0123456789abcdef0123456789abcdef","linux":"/0123456789abcdef0123456789abcdef/6.12.48+deb13-amd64/linux","initrd":["/0123456789abcdef0123456789abcdef/6.12.48+deb13-amd64/initrd.img-6.12.48+deb13-amd64"],"isReported":true,"isDefault":true,"isSelected":false,"addons":[],"cmdline":"root=UUID=6f1d2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b ro quiet systemd.machine_id=0123456789abcdef0123456789abcdef"},{"type":"type1","source":"esp","id":"0123456789abcdef0123456789abcdef-6.12.41+deb13-amd64.conf","path":"/boot/efi/loader/entries/0123456789abcdef0123456789abcdef-6.12.41+deb13-amd64.conf","root":"/boot/efi","title":"Debian GNU/Linux 13 (trixie)","showTitle":"Debian GNU/Linux 13 (trixie)","sortKey":"debian","version":"6.12.41+deb13-amd64","machineId":"0123456789abcdef0123456789abcdef","options":"root=UUID=6f1d2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b ro quiet systemd.machine_id=0123456789abcdef0123456789abcdef","linux":"/0123456789abcdef0123456789abcdef/6.12.41+deb13-amd64/linux","initrd":["/0123456789abcdef0123456789abcdef/6.12.41+deb13-amd64/initrd.img-6.12.41+deb13-amd64"],"isReported":true,"isDefault":false,"isSelected":true,"addons":[],"cmdline":"root=UUID=6f1d2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b ro quiet systemd.machine_id=0123456789abcdef0123456789abcdef"},{"type":"auto","source":"esp","id":"auto-reboot-to-firmware-setup","title":"Reboot Into Firmware Interface","showTitle":"Reboot Into Firmware Interface","isReported":true,"isDefault":false,"isSelected":false,"addons":[]}]"#

/// systemd 252 (Debian 12): one object per line, no `type`, no `isDefault`.
let debian12BootctlList = #"""
{"id":"fedcba9876543210fedcba9876543210-6.1.0-18-amd64.conf","path":"/boot/efi/loader/entries/fedcba9876543210fedcba9876543210-6.1.0-18-amd64.conf","root":"/boot/efi","title":"Debian GNU/Linux 12 (bookworm)","showTitle":"Debian GNU/Linux 12 (bookworm)","sortKey":"debian","version":"6.1.0-18-amd64","machineId":"fedcba9876543210fedcba9876543210","options":"root=UUID=u ro quiet","linux":"/fedcba9876543210fedcba9876543210/6.1.0-18-amd64/linux","initrd":["/fedcba9876543210fedcba9876543210/6.1.0-18-amd64/initrd.img-6.1.0-18-amd64"]}
{"id":"fedcba9876543210fedcba9876543210-6.1.0-17-amd64.conf","path":"/boot/efi/loader/entries/fedcba9876543210fedcba9876543210-6.1.0-17-amd64.conf","root":"/boot/efi","title":"Debian GNU/Linux 12 (bookworm)","showTitle":"Debian GNU/Linux 12 (bookworm)","sortKey":"debian","version":"6.1.0-17-amd64","machineId":"fedcba9876543210fedcba9876543210","options":"root=UUID=u ro quiet","linux":"/fedcba9876543210fedcba9876543210/6.1.0-17-amd64/linux","initrd":["/fedcba9876543210fedcba9876543210/6.1.0-17-amd64/initrd.img-6.1.0-17-amd64"]}

"""#

@Suite struct BootctlListTests {
    let mid = "0123456789abcdef0123456789abcdef"

    @Test func readsSystemd257sArray() throws {
        let list = BootctlList.parse(debian13BootctlList)
        #expect(list.entries.count == 3)
        #expect(list.entryID(forRelease: "6.12.48+deb13-amd64") == "\(mid)-6.12.48+deb13-amd64.conf")
        #expect(list.entryID(forRelease: "6.12.41+deb13-amd64") == "\(mid)-6.12.41+deb13-amd64.conf")
        #expect(list.defaultEntry?.version == "6.12.48+deb13-amd64")
        #expect(list.entries[1].isSelected == true && list.entries[1].isDefault == false)
        #expect(list.entries[2].type == "auto" && !list.entries[2].isKernelEntry)
        #expect(list.entryID(forRelease: "auto-reboot-to-firmware-setup") == nil)
        // The dry-run's guess for a kernel not installed yet, from the running one's entry.
        #expect(list.expectedEntryID(forRelease: "6.12.57+deb13-amd64", like: "6.12.41+deb13-amd64") == "\(mid)-6.12.57+deb13-amd64.conf")
        #expect(list.expectedEntryID(forRelease: "6.12.57+deb13-amd64", like: nil) == nil)
        // The pretty form is the same JSON.
        let pretty = try JSONSerialization.data(withJSONObject: try JSONSerialization.jsonObject(with: Data(debian13BootctlList.utf8)), options: [.prettyPrinted])
        #expect(BootctlList.parse(String(decoding: pretty, as: UTF8.self)) == list)
    }

    @Test func readsSystemd252sObjectPerLine() {
        let list = BootctlList.parse(debian12BootctlList)
        #expect(list.entries.count == 2)
        #expect(list.entryID(forRelease: "6.1.0-17-amd64") == "fedcba9876543210fedcba9876543210-6.1.0-17-amd64.conf")
        #expect(list.defaultEntry == nil)
    }

    /// Whole release names only: neither a longer release nor a prefix of one matches.
    @Test func matchesWholeReleasesOnly() {
        func e(_ id: String, version: String? = nil, linux: String? = nil) -> BootctlList.Entry {
            BootctlList.Entry(type: "type1", id: id, version: version, linux: linux)
        }
        let list = BootctlList(entries: [
            e("t-6.1.0-18-amd64.conf", version: "6.1.0-18-amd64", linux: "/t/6.1.0-18-amd64/linux"),
            e("t-6.1.0-180.conf", version: "6.1.0-180", linux: "/t/6.1.0-180/linux"),
        ])
        #expect(list.entryID(forRelease: "6.1.0-18") == nil)
        #expect(list.entryID(forRelease: "6.1.0-1") == nil)
        #expect(list.entryID(forRelease: "18-amd64") == nil)
        #expect(list.entryID(forRelease: "6.1.0-180") == "t-6.1.0-180.conf")
        #expect(list.entryID(forRelease: "6.1.0-18-amd64") == "t-6.1.0-18-amd64.conf")
        #expect(list.entryID(forRelease: "") == nil)
        // Without a version: the linux path (kernel-install's layout, or a vmlinuz- image), or the id.
        #expect(e("x.conf", linux: "/t/6.1.0-18-amd64/linux").boots("6.1.0-18-amd64"))
        #expect(!e("x.conf", linux: "/t/6.1.0-18-amd64/linux").boots("6.1.0-18"))
        #expect(e("x.conf", linux: "/vmlinuz-6.1.0-18-amd64").boots("6.1.0-18-amd64"))
        #expect(!e("x.conf", linux: "/vmlinuz-6.1.0-180").boots("6.1.0-18"))
        #expect(e("t-6.1.0-18-amd64+3-0.conf").boots("6.1.0-18-amd64"), "a boot counter is not part of the name")
        #expect(!e("t-6.1.0-180.conf").boots("6.1.0-18"))
        #expect(!e("t-6.1.0-18-amd64.conf", version: "6.1.0-18-amd64").boots("18-amd64"), "the version tells, not a suffix of the id")
        #expect(!e("t-6.1.0-18.conf", linux: "/t/6.1.0-180/linux").boots("6.1.0-18"), "the path tells, not the id")
        // An admin's copy next to kernel-install's entry: kernel-install's wins.
        let two = BootctlList(entries: [e("custom.conf", version: "6.1.0-18-amd64"), e("t-6.1.0-18-amd64.conf", version: "6.1.0-18-amd64")])
        #expect(two.entryID(forRelease: "6.1.0-18-amd64") == "t-6.1.0-18-amd64.conf")
    }

    /// Every byte is the host's: nothing here may trap, and ids that are not loader entry names never come out.
    @Test func hostileOutputNeverTrapsAndYieldsNoBadIDs() {
        let hostile = [
            "", "null", "[", "]", "{", "[{]", "not json at all", "[1, 2, \"x\", null, true]", "{\"id\": 5}",
            String(repeating: "[", count: 100_000), String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000),
            String(repeating: "{\"a\":", count: 50_000) + "1" + String(repeating: "}", count: 50_000),
            "[{\"id\":\"t-6.1.0-18.conf\",\"version\":\"6.1.0-18\",\"isDefault\":\"yes\"}",  // cut off
            "\u{0}\u{1}\u{FFFF}[{\"id\":\"a\"}]",
        ]
        for text in hostile {
            let list = BootctlList.parse(text)
            #expect(list.entryID(forRelease: "6.1.0-18") == nil, "\(text.prefix(40))")
        }
        // Types that are not what the key holds are ignored, the entry kept.
        let typed = BootctlList.parse(#"[{"id":"t-6.1.0-18.conf","version":["6.1.0-18"],"linux":7,"isDefault":"true"}]"#)
        #expect(typed.entries.count == 1 && typed.entries[0].version == nil && typed.entries[0].isDefault == nil)
        #expect(typed.entryID(forRelease: "6.1.0-18") == "t-6.1.0-18.conf", "by its id")
        // Ids a shell or bootctl would take apart are never returned.
        for bad in ["t-6.1.0-18.conf; reboot", "../t-6.1.0-18.conf", "t 6.1.0-18.conf", "t-6.1.0-18.conf\\n", "$(reboot)-6.1.0-18", "ü-6.1.0-18"] {
            let json = #"[{"type":"type1","id":"\#(bad)","version":"6.1.0-18"}]"#
            #expect(BootctlList.parse(json).entryID(forRelease: "6.1.0-18") == nil, "\(bad)")
        }
        #expect(BootctlList.parse(#"[{"id":"\#(String(repeating: "a", count: 300))-6.1.0-18.conf","version":"6.1.0-18"}]"#).entryID(forRelease: "6.1.0-18") == nil)
    }

    @Test func inputIsBoundedInSizeAndEntries() {
        // 5000 entries: only the first maxEntries are read.
        let many = "[" + (0..<5000).map { #"{"type":"type1","id":"t-1.0.\#($0).conf","version":"1.0.\#($0)"}"# }.joined(separator: ",") + "]"
        let list = BootctlList.parse(many)
        #expect(list.entries.count == BootctlList.maxEntries)
        #expect(list.entryID(forRelease: "1.0.3") == "t-1.0.3.conf")
        #expect(list.entryID(forRelease: "1.0.4999") == nil)
        // Past maxBytes nothing more is read: an array cut off there is no JSON; lines before it are.
        let pad = #"{"id":"pad.conf","title":"\#(String(repeating: "x", count: 4000))"}"#
        let big = debian12BootctlList + Array(repeating: pad, count: 300).joined(separator: "\n") + "\n" + #"{"id":"t-9.9.9.conf","version":"9.9.9"}"#
        #expect(big.utf8.count > BootctlList.maxBytes)
        let read = BootctlList.parse(big)
        #expect(read.entryID(forRelease: "6.1.0-18-amd64") != nil)
        #expect(read.entryID(forRelease: "9.9.9") == nil)
        #expect(BootctlList.parse("[" + String(repeating: " ", count: BootctlList.maxBytes) + debian13BootctlList.dropFirst()).entries.isEmpty)
    }
}
