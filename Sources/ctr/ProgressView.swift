import Foundation
import Layers

/// Transfer progress on stderr: on a terminal one line per item with bytes, rate and state,
/// redrawn in place; otherwise plain lines when an item changes state.
final class ProgressView: TransferProgress, @unchecked Sendable {
    struct Item {
        var total: Int64
        var counter: UnsafeMutablePointer<UInt64>?
        var state: String
        var started: Date?
        var finished: Date?
    }

    let tty: Bool
    let verb: String
    private let lock = NSLock()
    private var order: [String] = []
    private var items: [String: Item] = [:]
    private var drawn = 0
    private var timer: Thread?
    private var running = true

    init(verb: String) {
        self.verb = verb
        tty = isatty(2) != 0 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
        Self.current.set(self)
        if tty {
            let t = Thread { [weak self] in
                while let s = self, s.isRunning {
                    s.redraw()
                    Thread.sleep(forTimeInterval: 0.1)
                }
            }
            timer = t
            t.start()
        }
    }

    var isRunning: Bool { lock.lock(); defer { lock.unlock() }; return running }

    func item(_ id: String, total: Int64, counter: UnsafeMutablePointer<UInt64>?) {
        lock.lock()
        if items[id] == nil { order.append(id) }
        items[id] = Item(total: total, counter: counter, state: "waiting")
        lock.unlock()
    }

    func state(_ id: String, _ state: String) {
        lock.lock()
        if items[id] == nil && id != "mirror" {
            order.append(id)
            items[id] = Item(total: 0, counter: nil, state: state)
        }
        var line: String?
        defer { lock.unlock() }
        if var it = items[id] {
            if (state == "downloading" || state == "uploading") && it.started == nil { it.started = Date() }
            if state == "done" || state == "exists" || state == "mounted" || state == "failed" { it.finished = Date() }
            let changed = it.state != state
            it.state = state
            items[id] = it
            // plain lines: what starts and what ends well (the error says what failed)
            if !tty && changed && state != "waiting" && state != "failed" { line = render(id, it) }
        } else if id == "mirror" {
            line = state
        }
        guard let line else { return }
        put(line)
    }

    /// A line above the item lines (a terminal's next redraw puts them back below it).
    /// Called with the lock held.
    private func put(_ line: String) {
        if tty && drawn > 0 {
            // above the item lines, which the next redraw puts back below it
            Out.write(2, Data("\u{1B}[\(drawn)A\u{1B}[J\(line)\n".utf8))
            drawn = 0
        } else {
            Out.write(2, Data((line + "\n").utf8))
        }
    }

    private func render(_ id: String, _ it: Item) -> String {
        let done = it.counter.map { Int64($0.pointee) } ?? 0
        var s = "\(id): \(it.state)"
        if it.total > 0 {
            switch it.state {
            case "downloading" where !tty, "uploading" where !tty:
                s += "  \(Self.size(it.total))"
            case "downloading", "uploading":
                s += "  \(Self.size(done)) / \(Self.size(it.total))"
                if let st = it.started {
                    let secs = max(Date().timeIntervalSince(st), 0.001)
                    s += "  \(Self.size(Int64(Double(done) / secs)))/s"
                }
            case "done":
                s += "  \(Self.size(it.total))"
                if let st = it.started, let f = it.finished {
                    let secs = max(f.timeIntervalSince(st), 0.001)
                    s += String(format: " in %.1fs (%@/s)", secs, Self.size(Int64(Double(it.total) / secs)))
                }
            default:
                s += "  \(Self.size(it.total))"
            }
        }
        return s
    }

    /// Draw the item lines over the previous drawing. Only `finish` draws once it has begun:
    /// a timer tick that comes later would draw over what the command prints next.
    private func redraw(final: Bool = false) {
        lock.lock()
        defer { lock.unlock() }
        if !running && !final { return }
        var out = ""
        if drawn > 0 { out += "\u{1B}[\(drawn)A" }
        for id in order {
            guard let it = items[id] else { continue }
            out += "\u{1B}[2K" + render(id, it) + "\n"
        }
        drawn = order.count
        Out.write(2, Data(out.utf8))
    }

    /// The last drawing; later calls do nothing (the command calls it before printing its
    /// result, and again on the way out).
    func finish() {
        lock.lock()
        let wasRunning = running
        running = false
        lock.unlock()
        if tty && wasRunning { redraw(final: true) }
        Self.current.clear(self)
    }

    /// The view drawing now, if any: notes go above its lines.
    private static let current = Current()

    private final class Current: @unchecked Sendable {
        private let lock = NSLock()
        private weak var view: ProgressView?
        func set(_ v: ProgressView) { lock.lock(); view = v; lock.unlock() }
        func clear(_ v: ProgressView) { lock.lock(); if view === v { view = nil }; lock.unlock() }
        func get() -> ProgressView? { lock.lock(); defer { lock.unlock() }; return view }
    }

    /// A warning line from a transfer ("waiting", "retrying"): above the running view's item
    /// lines on a terminal, else a plain line.
    static func note(_ text: String) {
        let line = "warning: " + text
        if let v = current.get() {
            v.lock.lock()
            if v.running {
                v.put(line)
                v.lock.unlock()
                return
            }
            v.lock.unlock()
        }
        Out.write(2, Data((line + "\n").utf8))
    }

    static func size(_ b: Int64) -> String {
        let u = ["B", "kB", "MB", "GB"]
        var v = Double(b)
        var i = 0
        while v >= 1000 && i < u.count - 1 { v /= 1000; i += 1 }
        return i == 0 ? "\(b)B" : String(format: "%.1f%@", v, u[i])
    }
}
