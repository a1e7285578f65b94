import Foundation

/// `CTR_TRACE=1`: milliseconds since the process started at named points of `ctr run`, on
/// stderr (how bench/run.sh's figures were taken apart).
public enum Trace {
    nonisolated(unsafe) static let on = getenv("CTR_TRACE") != nil
    nonisolated(unsafe) static var t0: Double = {
        // the process's start time, from /proc/self/stat field 22 (clock ticks since boot)
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        let now = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        if let s = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8), let close = s.lastIndex(of: ")") {
            let f = s[s.index(after: close)...].split(separator: " ")
            if f.count > 19, let st = Double(f[19]) { return st / Double(sysconf(Int32(_SC_CLK_TCK))) }
        }
        return now
    }()

    public static func point(_ label: String) {
        guard on else { return }
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        let now = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        FileHandle.standardError.write(Data(String(format: "trace %7.2f ms  %@\n", (now - t0) * 1000, label).utf8))
    }
}
