/// BuildKit's `key=value,key=value` option lists (`RUN --mount=…`, `--secret`, `--output`,
/// `--cache-to`): fields are comma-separated CSV, so a field in double quotes may hold commas
/// (`"source=a,b"`, `""` for a quote inside).
public enum OptionList {
    /// Fields in order, each split at its first `=`; a field without one gets `bare` as value.
    public static func pairs(_ spec: String, bare: String = "") -> [(key: String, value: String)] {
        fields(spec).map { f in
            guard let eq = f.firstIndex(of: "=") else { return (f, bare) }
            return (String(f[..<eq]), String(f[f.index(after: eq)...]))
        }
    }

    /// As a dictionary (the last of a repeated key wins); `lowercaseKeys` as BuildKit does for
    /// mount options.
    public static func parse(_ spec: String, bare: String = "", lowercaseKeys: Bool = false) -> [String: String] {
        var d: [String: String] = [:]
        for (k, v) in pairs(spec, bare: bare) { d[lowercaseKeys ? k.lowercased() : k] = v }
        return d
    }

    static func fields(_ spec: String) -> [String] {
        var out: [String] = []
        var cur = ""
        var chars = spec.makeIterator()
        var atStart = true
        var quoted = false
        while let c = chars.next() {
            if quoted {
                if c == "\"" {
                    // "" inside quotes is one quote; a lone quote ends the quoting
                    var look = chars
                    if look.next() == "\"" { cur.append("\""); chars = look } else { quoted = false }
                } else {
                    cur.append(c)
                }
                continue
            }
            if c == "," {
                out.append(cur)
                cur = ""
                atStart = true
                continue
            }
            if c == "\"" && atStart {
                quoted = true
                atStart = false
                continue
            }
            atStart = false
            cur.append(c)
        }
        out.append(cur)
        return out.filter { !$0.isEmpty }
    }
}
