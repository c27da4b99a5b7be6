

/// Sizes (`512MiB`, `2GiB`, `1.5GB`) and ratios (`99.5%`, `0.995`) as users write them.
public enum Quantity {
    /// Bytes from a size. Binary units (KiB, MiB, GiB, TiB) are powers of 1024,
    /// decimal ones (kB, MB, GB, TB) of 1000; a bare number is bytes.
    public static func bytes(_ text: String) -> UInt64? {
        let t = text.trimmed
        let units: [(String, Double)] = [("TiB", 1099511627776), ("GiB", 1073741824), ("MiB", 1048576), ("KiB", 1024),
                                         ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("KB", 1e3), ("B", 1)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            guard let n = Double(String(t.dropLast(suffix.count)).trimmed), n.isFinite, n >= 0, n * scale < 1.8e19 else { return nil }
            return UInt64((n * scale).rounded())
        }
        guard let n = UInt64(t) else { return nil }
        return n
    }

    /// A ratio 0...1 from `99.5%` or `0.995`.
    public static func ratio(_ text: String) -> Double? {
        let t = text.trimmed
        if t.hasSuffix("%") {
            guard let n = Double(String(t.dropLast()).trimmed), n.isFinite, (0...100).contains(n) else { return nil }
            return n / 100
        }
        guard let n = Double(t), n.isFinite, (0...1).contains(n) else { return nil }
        return n
    }

    /// `1.5 GiB`, `300 MiB`, `12 KiB`.
    public static func formatBytes(_ b: UInt64) -> String {
        let d = Double(b)
        if d >= Double(1 << 30) { return fmt(d / Double(1 << 30)) + " GiB" }
        if d >= Double(1 << 20) { return fmt(d / Double(1 << 20)) + " MiB" }
        if d >= Double(1 << 10) { return fmt(d / Double(1 << 10)) + " KiB" }
        return "\(b) B"
    }

    public static func fmt(_ x: Double) -> String {
        let r = (x * 10).rounded() / 10
        return r == r.rounded() && r >= 100 ? String(Int(r)) : String(format1: r)
    }
}

extension String {
    public init(format1 x: Double) {
        let scaled = Int((x * 10).rounded())
        self = "\(scaled / 10).\(abs(scaled % 10))"
    }
}

extension Substring {
    /// Leading and trailing whitespace removed.
    public var trimmed: String { String(self).trimmed }
}
