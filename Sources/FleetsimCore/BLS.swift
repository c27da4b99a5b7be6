import Foundation

/// GRUB as RHEL 9 sets it up: one Boot Loader Specification entry per kernel under
/// `/boot/loader/entries/<machine-id>-<release>.conf` (written by kernel-install), `grub.cfg`
/// reading them with `blscfg`, `/boot/grub2/grubenv` naming the default by entry id, and
/// the boot-time choice (`next_entry` once, else `saved_entry`, else the first entry).
public enum BLS {
    public static let osName = "Red Hat Enterprise Linux"
    public static let osVersion = "9.4 (Plow)"
    /// The kernel command line of every entry, as an LVM install of RHEL 9 writes it.
    public static let options = "root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap"

    /// One entry file, with the keys grubby and GRUB read.
    public struct Entry: Sendable, Equatable {
        /// The file name without `.conf`: what `saved_entry` and `grub2-reboot` name.
        public var id: String
        public var path: String
        public var title: String
        public var version: String
        /// `linux` as written (`/vmlinuz-<release>`: relative to the /boot partition).
        public var linux: String
        public var initrd: String
        public var options: String

        /// The release the entry boots (its `vmlinuz-` image's suffix).
        public var release: String? {
            guard let name = linux.split(separator: "/").last, name.hasPrefix("vmlinuz-") else { return nil }
            return String(name.dropFirst("vmlinuz-".count))
        }
        public var isRescue: Bool { release?.hasPrefix("0-rescue-") ?? false }
    }

    public static func entryID(machineID: String, release: String) -> String { "\(machineID)-\(release)" }

    /// The entry file kernel-install writes for `release` (RHEL's `/lib/modules/<release>/bls.conf`).
    public static func entryText(release: String) -> String {
        """
        title \(osName) (\(release)) \(osVersion)
        version \(release)
        linux /vmlinuz-\(release)
        initrd /initramfs-\(release).img $tuned_initrd
        options \(options) $tuned_params
        grub_users $grub_users
        grub_arg --unrestricted
        grub_class rhel

        """
    }

    /// The rescue entry the installer writes (`<machine-id>-0-rescue.conf`).
    public static func rescueText(machineID: String) -> String {
        """
        title \(osName) (0-rescue-\(machineID)) \(osVersion)
        version 0-rescue-\(machineID)
        linux /vmlinuz-0-rescue-\(machineID)
        initrd /initramfs-0-rescue-\(machineID).img
        options \(options)
        grub_users $grub_users
        grub_arg --unrestricted
        grub_class kernel

        """
    }

    /// The files the kernel package puts in /boot, and its entry (kernel-install's part).
    public static func installKernel(bootDir: String, release: String, machineID: String) throws {
        try writeFile(bootDir + "/vmlinuz-\(release)", "fleetsim: simulated Linux kernel image \(release)\n")
        try writeFile(bootDir + "/initramfs-\(release).img", "fleetsim: simulated initramfs for \(release)\n")
        try writeFile(bootDir + "/config-\(release)", "# Linux/x86_64 \(release) Kernel Configuration (fleetsim)\nCONFIG_SLUB=y\n")
        try writeFile(bootDir + "/System.map-\(release)", "ffffffff81000000 T _text\n")
        try mkdirs(bootDir + "/loader/entries")
        try writeFile(bootDir + "/loader/entries/\(entryID(machineID: machineID, release: release)).conf", entryText(release: release))
    }

    public static func installRescue(bootDir: String, machineID: String) throws {
        try writeFile(bootDir + "/vmlinuz-0-rescue-\(machineID)", "fleetsim: simulated rescue kernel image\n")
        try writeFile(bootDir + "/initramfs-0-rescue-\(machineID).img", "fleetsim: simulated rescue initramfs\n")
        try mkdirs(bootDir + "/loader/entries")
        try writeFile(bootDir + "/loader/entries/\(machineID)-0-rescue.conf", rescueText(machineID: machineID))
    }

    /// The value of `key` in an entry file (`key value...`, first match, as grubby's `grep ^key`).
    static func value(_ text: String, _ key: String) -> String {
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            guard line.hasPrefix(key) else { continue }
            let rest = line.dropFirst(key.count)
            guard let f = rest.first, f == " " || f == "\t" else { continue }
            return String(rest.drop { $0 == " " || $0 == "\t" })
        }
        return ""
    }

    /// The entries in `bootDir`/loader/entries in menu order: newest release first, as
    /// grubby's rpm-sort and GRUB's blscfg sort them (the rescue entry, version 0, last).
    public static func entries(bootDir: String) -> [Entry] {
        let dir = bootDir + "/loader/entries"
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".conf") }
        var out: [Entry] = []
        for f in files {
            guard let text = readFile(dir + "/" + f) else { continue }
            out.append(Entry(id: String(f.dropLast(".conf".count)), path: "/boot/loader/entries/" + f,
                             title: value(text, "title"), version: value(text, "version"), linux: value(text, "linux"),
                             initrd: value(text, "initrd"), options: value(text, "options")))
        }
        return out.sorted { a, b in
            if a.isRescue != b.isRescue { return !a.isRescue }
            return Grub.versionLess(b.version, a.version)
        }
    }

    /// The installed kernel releases (rescue image left out), oldest first.
    public static func installedKernels(bootDir: String) -> [String] {
        Grub.installedKernels(bootDir: bootDir).filter { !$0.hasPrefix("0-rescue-") }.reversed()
    }

    /// The entry GRUB's `default` names: an index into the menu, an entry id or a title.
    public static func resolve(_ spec: String, in entries: [Entry]) -> Entry? {
        if !spec.isEmpty, spec.allSatisfy({ $0.isASCII && $0.isNumber }) {
            guard let n = Int(spec), n < entries.count else { return nil }
            return entries[n]
        }
        return entries.first { $0.id == spec || $0.title == spec }
    }

    /// The kernel GRUB boots for this `default` (falling back to the first entry: the newest kernel).
    public static func kernelFor(default spec: String?, entries: [Entry]) -> (kernel: String?, matched: Bool) {
        if let spec, !spec.isEmpty, let e = resolve(spec, in: entries), let k = e.release {
            return (k, true)
        }
        return (entries.first?.release, false)
    }

    /// `/etc/sysconfig/kernel`'s UPDATEDEFAULT (shell syntax: `UPDATEDEFAULT=yes`, quotes allowed).
    public static func updateDefault(sysconfig text: String?) -> Bool {
        guard let text else { return false }
        var value = ""
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard line.hasPrefix("UPDATEDEFAULT=") else { continue }
            value = String(line.dropFirst("UPDATEDEFAULT=".count)).trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
        }
        return value == "yes"
    }

    public static let sysconfigKernel = """
        # UPDATEDEFAULT specifies if kernel-install should make
        # new kernels the default
        UPDATEDEFAULT=yes

        # DEFAULTKERNEL specifies the default kernel package type
        DEFAULTKERNEL=kernel-core

        """

    public static let osRelease = """
        NAME="Red Hat Enterprise Linux"
        VERSION="9.4 (Plow)"
        ID="rhel"
        ID_LIKE="fedora"
        VERSION_ID="9.4"
        PLATFORM_ID="platform:el9"
        PRETTY_NAME="Red Hat Enterprise Linux 9.4 (Plow)"
        ANSI_COLOR="0;31"
        LOGO="fedora-logo-icon"
        CPE_NAME="cpe:/o:redhat:enterprise_linux:9::baseos"
        HOME_URL="https://www.redhat.com/"
        DOCUMENTATION_URL="https://access.redhat.com/documentation/en-us/red_hat_enterprise_linux/9"
        BUG_REPORT_URL="https://issues.redhat.com/"

        REDHAT_BUGZILLA_PRODUCT="Red Hat Enterprise Linux 9"
        REDHAT_BUGZILLA_PRODUCT_VERSION=9.4
        REDHAT_SUPPORT_PRODUCT="Red Hat Enterprise Linux"
        REDHAT_SUPPORT_PRODUCT_VERSION="9.4"

        """

    public static let etcDefaultGrub = """
        GRUB_TIMEOUT=5
        GRUB_DISTRIBUTOR="$(sed 's, release .*$,,g' /etc/system-release)"
        GRUB_DEFAULT=saved
        GRUB_DISABLE_SUBMENU=true
        GRUB_TERMINAL_OUTPUT="console"
        GRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap"
        GRUB_DISABLE_RECOVERY="true"
        GRUB_ENABLE_BLSCFG=true

        """

    /// grub.cfg as RHEL 9's grub2-mkconfig writes it (trimmed): the 00_header's one-shot logic and `blscfg`.
    public static func grubCfg(rootUUID: String) -> String {
        """
        #
        # DO NOT EDIT THIS FILE
        #
        # It is automatically generated by grub2-mkconfig using templates
        # from /etc/grub.d and settings from /etc/default/grub
        #

        ### BEGIN /etc/grub.d/00_header ###
        set pager=1

        if [ -f ${config_directory}/grubenv ]; then
          load_env -f ${config_directory}/grubenv
        elif [ -s $prefix/grubenv ]; then
          load_env
        fi
        if [ "${next_entry}" ] ; then
           set default="${next_entry}"
           set next_entry=
           save_env next_entry
           set boot_once=true
        else
           set default="${saved_entry}"
        fi

        if [ x"${feature_menuentry_id}" = xy ]; then
          menuentry_id_option="--id"
        else
          menuentry_id_option=""
        fi

        export menuentry_id_option

        if [ "${prev_saved_entry}" ]; then
          set saved_entry="${prev_saved_entry}"
          save_env saved_entry
          set prev_saved_entry=
          save_env prev_saved_entry
          set boot_once=true
        fi

        function savedefault {
          if [ -z "${boot_once}" ]; then
            saved_entry="${chosen}"
            save_env saved_entry
          fi
        }
        terminal_output console
        set timeout=5
        ### END /etc/grub.d/00_header ###

        ### BEGIN /etc/grub.d/10_linux ###
        insmod part_gpt
        insmod xfs
        set root='hd0,gpt2'
        search --no-floppy --fs-uuid --set=root \(rootUUID)
        insmod part_gpt
        insmod xfs
        set boot='hd0,gpt2'
        search --no-floppy --fs-uuid --set=boot \(rootUUID)

        # The kernel command line is in each entry's `options` (RHEL 9), not here.
        insmod blscfg
        blscfg
        ### END /etc/grub.d/10_linux ###

        ### BEGIN /etc/grub.d/30_uefi-firmware ###
        ### END /etc/grub.d/30_uefi-firmware ###

        """
    }
}
