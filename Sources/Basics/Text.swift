/// Text helpers every layer uses (no Foundation needed).

extension Substring {
    public func trimmingWhitespace() -> Substring {
        var s = self
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return s
    }
}

extension String {
    /// Leading and trailing whitespace removed (no Foundation needed).
    public var trimmed: String { String(self[...].trimmingWhitespace()) }
}
