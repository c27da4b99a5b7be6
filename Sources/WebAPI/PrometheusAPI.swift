import Foundation
import Basics

/// One series of an instant query's answer.
public struct PromSeries: Sendable, Equatable, Codable {
    public var labels: [String: String]
    public var value: Double

    public init(labels: [String: String], value: Double) {
        self.labels = labels
        self.value = value
    }

    /// `{instance="10.0.0.1:9100"}` — the labels as PromQL writes them (without `__name__`).
    public var labelText: String {
        let inner = labels.filter { $0.key != "__name__" }.sorted { $0.key < $1.key }
            .map { "\($0.key)=\"\(Placeholders.escapeString($0.value))\"" }.joined(separator: ",")
        return "{\(inner)}"
    }
}

/// A query Prometheus could not answer usefully: unreachable, an error status, or an answer
/// of the wrong shape. The gate counts it as *inconclusive* (never a pass).
public struct PromQueryError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Prometheus's HTTP API: instant queries (`/api/v1/query`).
public struct PrometheusAPI: Sendable {
    public var url: String
    public var timeout: Duration
    public var caFile: String?

    public init(url: String, timeout: Duration = .seconds(10), caFile: String? = nil) {
        self.url = url
        self.timeout = timeout
        self.caFile = caFile
    }

    /// The biggest answer read: a gate query names one host's series, not the whole TSDB.
    public static let maxBody = 1 << 20
    /// Series kept from one answer (the evidence shows them; more is a query that needs a filter).
    public static let maxSeries = 100

    /// Evaluates `query` now. A vector answer gives its series, a scalar one series without
    /// labels; an empty vector is an empty list (the caller decides what that means).
    public func query(_ query: String) async throws(PromQueryError) -> [PromSeries] {
        let target = joinURL(url, "/api/v1/query")
        let response: WebResponse
        do {
            response = try await WebClient.send(.POST, target, headers: [("Content-Type", "application/x-www-form-urlencoded")],
                                                body: Array(queryString([("query", query)]).utf8),
                                                timeout: timeout, maxBody: Self.maxBody, caFile: caFile)
        } catch {
            throw PromQueryError("prometheus: \(error)")
        }
        return try Self.decode(response)
    }

    /// The API's JSON answer turned into series (hostile input: any shape is checked).
    static func decode(_ response: WebResponse) throws(PromQueryError) -> [PromSeries] {
        struct Answer: Decodable {
            var status: String
            var error: String?
            var errorType: String?
            var data: DataPart?
        }
        struct DataPart: Decodable {
            var resultType: String
            var result: Result
        }
        enum Result: Decodable {
            case vector([Sample])
            case scalar([Value])
            case other
            init(from decoder: any Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let v = try? c.decode([Sample].self) { self = .vector(v) }
                else if let s = try? c.decode([Value].self) { self = .scalar(s) }
                else { self = .other }
            }
        }
        struct Sample: Decodable {
            var metric: [String: String]
            var value: [Value]
        }
        enum Value: Decodable {
            case number(Double), text(String)
            init(from decoder: any Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let d = try? c.decode(Double.self) { self = .number(d) } else { self = .text(try c.decode(String.self)) }
            }
            var double: Double? {
                switch self {
                case .number(let d): d
                case .text(let s): Double(s)   // "NaN", "+Inf", "-Inf" included
                }
            }
        }
        guard let answer = try? JSONDecoder().decode(Answer.self, from: Data(response.body)) else {
            let head = String(response.text.prefix(120)).filter { !$0.isNewline }
            throw PromQueryError("prometheus answered \(response.status) with no API answer (\"\(head)\")")
        }
        guard answer.status == "success", (200..<300).contains(response.status), let data = answer.data else {
            let why = [answer.errorType, answer.error].compactMap { $0 }.joined(separator: ": ")
            throw PromQueryError("prometheus refused the query (\(response.status)\(why.isEmpty ? "" : ", " + String(why.prefix(300))))")
        }
        switch (data.resultType, data.result) {
        case ("vector", .vector(let samples)):
            var out: [PromSeries] = []
            for s in samples.prefix(maxSeries) {
                guard s.value.count == 2, let v = s.value[1].double else {
                    throw PromQueryError("prometheus sent a sample without a value")
                }
                out.append(PromSeries(labels: s.metric, value: v))
            }
            return out
        case ("scalar", .scalar(let pair)):
            guard pair.count == 2, let v = pair[1].double else { throw PromQueryError("prometheus sent a scalar without a value") }
            return [PromSeries(labels: [:], value: v)]
        default:
            throw PromQueryError("the query gives a \(data.resultType), not an instant vector or scalar (a range selector needs a function such as max_over_time)")
        }
    }
}
