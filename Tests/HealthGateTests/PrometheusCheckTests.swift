import Foundation
import Testing
@testable import Basics
@testable import HealthGate
@testable import WebAPI

/// Prometheus checks: placeholders that cannot rewrite a query, the API's answers read as hostile
/// input (a real socket per case), and the gate's judgement of the readings.
@Suite struct PrometheusCheckTests {
    // MARK: placeholders

    @Test func placeholdersBecomeEscapedStringContents() throws {
        let q = #"node_memory_SUnreclaim_bytes{instance="{address}:9100", host="{name}"}"#
        #expect(try Placeholders.expandPromQL(q, values: ["address": "10.0.0.7", "name": "web-001"])
                == #"node_memory_SUnreclaim_bytes{instance="10.0.0.7:9100", host="web-001"}"#)
        // A hostile name stays inside its string: the quote and backslash are escaped.
        let evil = #"x"} or vector(1) #\"#
        #expect(try Placeholders.expandPromQL(#"up{host="{name}"}"#, values: ["name": evil, "address": "a"])
                == #"up{host="x\"} or vector(1) #\\"}"#)
        // Single-quoted strings escape the single quote.
        #expect(try Placeholders.expandPromQL("up{host='{name}'}", values: ["name": "o'brien", "address": "a"]) == #"up{host='o\'brien'}"#)
        // Inside a regex matcher the value is regex-quoted too (then string-escaped: \\. in PromQL is \. in the regex).
        #expect(try Placeholders.expandPromQL(#"up{instance=~"{address}:.*"}"#, values: ["address": "10.0.0.7", "name": "n"])
                == #"up{instance=~"10\\.0\\.0\\.7:.*"}"#)
        #expect(try Placeholders.expandPromQL(#"up{instance !~ "{address}"}"#, values: ["address": "a+b", "name": "n"])
                == #"up{instance !~ "a\\+b"}"#)
        // Control characters cannot end the line or the string.
        #expect(try Placeholders.expandPromQL(#"up{h="{name}"}"#, values: ["name": "a\nb\u{1}", "address": "a"]) == #"up{h="a\nb\x01"}"#)
        // Regex braces that are not placeholders stay as written.
        #expect(try Placeholders.expandPromQL(#"up{job=~"a{3}"}"#, values: ["name": "n", "address": "a"]) == #"up{job=~"a{3}"}"#)
    }

    @Test func placeholdersOutsideAStringAreRefused() {
        #expect(throws: Placeholders.Problem.self) { try Placeholders.checkPromQL("up{{name}}") }
        #expect(throws: Placeholders.Problem.self) { try Placeholders.checkPromQL("sum by ({name}) (up)") }
        #expect(throws: Placeholders.Problem.self) { try Placeholders.checkPromQL("up{h=`{name}`}") }
        #expect(throws: Placeholders.Problem.self) { try Placeholders.checkPromQL(#"up{h="{name}}"#) }
        #expect((try? Placeholders.checkPromQL("up # about {name}\n")) != nil)
        #expect((try? Placeholders.checkPromQL("sum(rate(x[5m]))")) != nil)
    }

    @Test func alertmanagerMatchers() throws {
        let m = try AlertMatcher.parse(#"instance=~"{address}:.*""#)
        #expect(m.label == "instance" && m.op == .regex && m.perHost)
        #expect(m.forHost(name: "web", address: "10.0.0.7").value == #"10\.0\.0\.7:.*"#)
        #expect(m.forHost(name: "web", address: "10.0.0.7").description == #"instance=~"10\\.0\\.0\\.7:.*""#)
        let plain = try AlertMatcher.parse("severity = critical")
        #expect(plain == AlertMatcher(label: "severity", op: .equal, value: "critical") && !plain.perHost)
        #expect(try AlertMatcher.parse(#"host!="{name}""#).forHost(name: "a.b", address: "x").value == "a.b")
        #expect(try AlertMatcher.parse(#"a="q\"x""#).value == #"q"x"#)
        for bad in ["=x", "9a=\"x\"", "sev", "sev==", #"sev="open"#, #"sev="a" b"#, "sev=a,b"] {
            #expect(throws: Placeholders.Problem.self, "\(bad)") { try AlertMatcher.parse(bad) }
        }
    }

    // MARK: the API's answers

    func ask(_ b: LoopbackHTTPServer.Behaviour, timeout: Duration = .seconds(5)) async throws -> Result<[PromSeries], PromQueryError> {
        let server = try LoopbackHTTPServer(always: b)
        defer { server.stop() }
        let api = PrometheusAPI(url: "http://127.0.0.1:\(server.port)/", timeout: timeout)
        do { return .success(try await api.query("up")) } catch { return .failure(error) }
    }

    static func json(_ body: String, status: String = "200 OK") -> LoopbackHTTPServer.Behaviour {
        .raw("HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
    }

    @Test func vectorScalarEmptyAndNaNAnswers() async throws {
        let vector = #"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","instance":"a:9100"},"value":[1700000000.1,"2147483648"]},{"metric":{"instance":"b"},"value":[1,"NaN"]}]}}"#
        let v = try await ask(Self.json(vector)).get()
        #expect(v.count == 2 && v[0].value == 2147483648 && v[0].labels["instance"] == "a:9100" && v[1].value.isNaN)
        #expect(v[0].labelText == #"{instance="a:9100"}"#)
        #expect(try await ask(Self.json(#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#)).get() == [PromSeries(labels: [:], value: .infinity)])
        #expect(try await ask(Self.json(#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)).get().isEmpty)
    }

    @Test func hostileOrWrongAnswersAreErrorsNeverValues() async throws {
        func message(_ b: LoopbackHTTPServer.Behaviour, timeout: Duration = .seconds(5)) async throws -> String {
            switch try await ask(b, timeout: timeout) {
            case .success(let s): return "VALUE \(s)"
            case .failure(let e): return e.message
            }
        }
        #expect(try await message(Self.json(#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#, status: "400 Bad Request"))
                .contains("bad_data: parse error"))
        #expect(try await message(Self.json(#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#))
                .contains("range selector"))
        #expect(try await message(.garbage).hasPrefix("prometheus"))
        #expect(try await message(Self.json("<html>login</html>")).contains("no API answer"))
        #expect(try await message(.raw("HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\r\nContent-Length: 0\r\n\r\n")).contains("redirect"))
        #expect(try await message(.endless(head: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n", filler: "[[[[[[[[")).contains("larger than"))
        let clock = ContinuousClock()
        let start = clock.now
        #expect(try await message(.hang, timeout: .milliseconds(500)).contains("in time"))
        #expect(clock.now - start < .seconds(4))
        #expect(try await message(.resetAtOnce).hasPrefix("prometheus"))
    }

    @Test func refusedConnectionSaysSo() async throws {
        let server = try LoopbackHTTPServer(always: .hang)
        let port = server.port
        server.stop()
        do {
            _ = try await PrometheusAPI(url: "http://127.0.0.1:\(port)", timeout: .seconds(3)).query("up")
            Issue.record("a closed port answered")
        } catch {
            #expect(error.message.contains("connect"), "\(error.message)")
        }
    }

    // MARK: judgement

    static let settings = GateSettings(soak: .seconds(20), interval: .seconds(1), probeTimeout: .milliseconds(500),
                                       sUnreclaimMaxShare: nil, sUnreclaimGrowthMaxPerHour: nil, testSite: nil,
                                       prometheus: PrometheusChecks(url: "http://prom:9090", checks: [
                                           PrometheusCheck(name: "slab", query: #"x{instance="{address}"}"#, max: 2 * 1024 * 1024 * 1024, unit: .bytes)]))

    static func samples(_ reading: (Int) -> MetricReading) -> [GateSample] {
        soakSamples(settings, state: flat()).map { s in
            var s = s
            s.metrics = [reading(s.index)]
            return s
        }
    }

    @Test func valueOverMaxFailsAtTheSampleThatShowsIt() throws {
        let all = Self.samples { i in MetricReading(name: "slab", series: [PromSeries(labels: ["instance": "a"], value: Double(i) * 200 * 1024 * 1024)]) }
        var stop: HostGateReport?
        for n in 1...all.count where stop == nil {
            stop = GateEvaluation.earlyStop(host: "a", samples: Array(all.prefix(n)), settings: Self.settings)
        }
        let r = try #require(stop)
        #expect(r.verdict == .fail && r.samples.count == 12)   // 11 × 200 MiB = 2.15 GiB > 2 GiB
        let f = try #require(finding(r, "prometheus:slab"))
        #expect(f.status == .fail && f.summary.contains("> max 2.0 GiB") && f.summary.contains(#"{instance="a"}"#), "\(f.summary)")
    }

    @Test func emptyErrorOrNaNIsInconclusiveNeverAPass() throws {
        for bad in [MetricReading(name: "slab"), MetricReading(name: "slab", error: "prometheus: refused"),
                    MetricReading(name: "slab", series: [PromSeries(labels: [:], value: .nan)])] {
            let r = GateEvaluation.evaluate(host: "a", samples: Self.samples { _ in bad }, settings: Self.settings)
            #expect(r.verdict == .inconclusive, "\(bad)")
            let f = try #require(finding(r, "prometheus:slab"))
            #expect(f.status == .inconclusive && f.summary.contains(bad.problem!), "\(f.summary)")
            // And the soak ends early once a verdict can no longer be reached.
            #expect(GateEvaluation.earlyStop(host: "a", samples: Self.samples { _ in bad }, settings: Self.settings)?.verdict == .inconclusive)
        }
        // A few unreadable answers among many are tolerated like unreadable facts (min_good_samples).
        let mostly = Self.samples { i in i == 3 ? MetricReading(name: "slab") : MetricReading(name: "slab", series: [PromSeries(labels: [:], value: 1e9)]) }
        let r = GateEvaluation.evaluate(host: "a", samples: mostly, settings: Self.settings)
        #expect(r.verdict == .pass, "\(r.render())")
        #expect(finding(r, "prometheus:slab")?.summary.contains("peak 954 MiB") == true, "\(finding(r, "prometheus:slab")?.summary ?? "")")
    }

    @Test func theRunnerAsksEveryHostItsOwnQuery() async throws {
        final class Recorder: MetricQuerying, @unchecked Sendable {
            let lock = NSLock()
            var queries: [String] = []
            func query(_ promql: String, in settings: PrometheusChecks, timeout: Duration) async throws -> [PromSeries] {
                lock.withLock { queries.append(promql) }
                return [PromSeries(labels: [:], value: 1)]
            }
        }
        let recorder = Recorder()
        var settings = Self.settings
        settings.soak = .seconds(2)
        settings.minSlopePoints = 2
        let clock = VirtualClock()
        var runner = try GateRunner(settings: settings, clock: clock, siteProbe: ScriptedSiteProbe { _ in .ok })
        runner.metricSource = recorder
        let hosts = ["10.0.0.1", "10.0.0.2"].map { GateHost(reader: FakeHost(hostName: "h-\($0)", clock: clock, state: flat()), address: $0) }
        let report = await runner.run(hosts)
        #expect(report.verdict == .pass, "\(report.hosts.map { $0.render() })")
        #expect(Set(recorder.queries) == [#"x{instance="10.0.0.1"}"#, #"x{instance="10.0.0.2"}"#])
        #expect(recorder.queries.count == 2 * settings.plannedSamples)
        #expect(report.hosts[0].samples.allSatisfy { $0.metrics.first?.series.first?.value == 1 })
    }
}
