import Foundation
import SSHTesting

/// Runs the built `rollctl` binary (next to the test bundle) as a user would.
enum CLI {
    static var binary: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        for candidate in [dir + "/rollctl", dir + "/../rollctl"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return dir + "/rollctl"
    }

    struct Result {
        var status: Int32
        var output: String
        var lines: [String] { output.split(separator: "\n").map(String.init) }
        /// The JSON objects among the output lines.
        var json: [[String: Any]] {
            lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }
    }

    static func run(_ args: [String], environment: [String: String] = [:]) throws -> Result {
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        env.removeValue(forKey: "SSH_AUTH_SOCK")
        for (k, v) in environment { env[k] = v }
        let (status, output) = try Spawn.run(binary, args, environment: env)
        return Result(status: status, output: output)
    }

    /// An inventory for a test sshd, plus extra host lines.
    static func inventory(for d: TestSSHD, extraHosts: String = "") throws -> String {
        let path = d.dir + "/inventory.yaml"
        try """
        defaults:
          user: \(d.user)
          identity: id_ed25519
          known_hosts: known_hosts
          connect_timeout: 3s
        hosts:
          - name: local-1
            address: 127.0.0.1
            port: \(d.port)
            labels: {rack: r1}
        \(extraHosts)
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
