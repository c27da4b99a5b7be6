import Foundation
import Mustache
import RolloutConfig

/// Rendering of the notice templates the plan loader checked, with swift-mustache
/// (hummingbird-project/swift-mustache).
extension NoticeTemplate {
    /// A value a template can show: text, or a list of host contexts for `{{#hosts}}`.
    public enum Value: Sendable { case text(String), list([[String: String]]) }

    /// Renders a template that passed `check` with swift-mustache, as plain text
    /// (no HTML escaping: notices are text mails and JSON webhooks).
    public static func render(_ text: String, _ context: [String: Value]) -> String {
        (try? renderChecked(text, context)) ?? text
    }

    /// `render` for what is sent: a template swift-mustache cannot parse is an error,
    /// never sent raw to a customer.
    public static func renderChecked(_ text: String, _ context: [String: Value]) throws -> String {
        var object: [String: Any] = [:]
        for (k, v) in context {
            switch v {
            case .text(let s): object[k] = s
            case .list(let l): object[k] = l
            }
        }
        let template: MustacheTemplate
        do { template = try MustacheTemplate(string: "{{% CONTENT_TYPE: TEXT}}" + text) } catch {
            throw TemplateRenderError(description: "a notice template does not render: \(error)")
        }
        return template.render(object)
    }
}

/// A notice template that cannot be rendered: the notice is not sent.
public struct TemplateRenderError: Error, Sendable, CustomStringConvertible {
    public var description: String
}
