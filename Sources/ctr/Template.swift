import Errors
import Foundation

/// The part of Go's text/template that `--format` users write: `{{.Field.Sub}}`, `{{.}}`,
/// `{{json .Field}}`, with text around; values print as Go prints them (`[a b]`, `map[k:v]`).
enum GoTemplate {
    static func render(_ template: String, _ value: Any) throws -> String {
        var out = ""
        var rest = Substring(template)
        while let open = rest.range(of: "{{") {
            out += rest[..<open.lowerBound]
            guard let close = rest.range(of: "}}", range: open.upperBound..<rest.endIndex) else {
                throw CtrError.usage("--format \(template): unclosed {{")
            }
            var action = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            if action.hasPrefix("-") { action = String(action.dropFirst()).trimmingCharacters(in: .whitespaces) }
            if action.hasSuffix("-") { action = String(action.dropLast()).trimmingCharacters(in: .whitespaces) }
            let words = action.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if words.count == 1, words[0].hasPrefix(".") {
                out += text(try lookup(words[0], in: value, template))
            } else if words.count == 2, words[0] == "json", words[1].hasPrefix(".") {
                out += try json(try lookup(words[1], in: value, template))
            } else {
                throw CtrError.usage("--format \(template): {{\(action)}} is not supported (use {{.Field}} or {{json .Field}})")
            }
            rest = rest[close.upperBound...]
        }
        return out + rest
    }

    static func lookup(_ path: String, in value: Any, _ template: String) throws -> Any? {
        var cur: Any? = value
        for key in path.split(separator: ".").map(String.init) {
            guard let dict = cur as? [String: Any] else {
                throw CtrError.usage("--format \(template): \(path): \(key) is not a field here")
            }
            cur = dict[key]
            if cur is NSNull { cur = nil }
        }
        return cur
    }

    static func text(_ v: Any?) -> String {
        switch v {
        case nil: return "<no value>"
        case let s as String: return s
        case let b as Bool: return b ? "true" : "false"
        case let n as NSNumber: return n.stringValue
        case let a as [Any]: return "[" + a.map { text($0) }.joined(separator: " ") + "]"
        case let d as [String: Any]: return "map[" + d.keys.sorted().map { "\($0):\(text(d[$0]))" }.joined(separator: " ") + "]"
        default: return "\(v!)"
        }
    }

    static func json(_ v: Any?) throws -> String {
        guard let v else { return "null" }
        if JSONSerialization.isValidJSONObject(v) {
            let d = try JSONSerialization.data(withJSONObject: v, options: [.sortedKeys, .withoutEscapingSlashes])
            return String(decoding: d, as: UTF8.self)
        }
        let d = try JSONSerialization.data(withJSONObject: [v], options: [.withoutEscapingSlashes])
        return String(String(decoding: d, as: UTF8.self).dropFirst().dropLast())
    }
}
