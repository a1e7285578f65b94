import Foundation

/// C strings and arrays for a plan, alive as long as the arena.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { blocks.forEach { free($0) } }

    func string(_ s: String) -> UnsafePointer<CChar> {
        let p = strdup(s)!
        blocks.append(UnsafeMutableRawPointer(p))
        return UnsafePointer(p)
    }

    func optional(_ s: String?) -> UnsafePointer<CChar>? { s.map(string) }

    /// A NULL-terminated array of C strings.
    func strings(_ list: [String]) -> UnsafePointer<UnsafePointer<CChar>?> {
        let raw = malloc(MemoryLayout<UnsafePointer<CChar>?>.stride * (list.count + 1))!
        blocks.append(raw)
        let arr = raw.bindMemory(to: UnsafePointer<CChar>?.self, capacity: list.count + 1)
        for (i, s) in list.enumerated() { arr[i] = string(s) }
        arr[list.count] = nil
        return UnsafePointer(arr)
    }

    func array<T>(_ items: [T]) -> UnsafePointer<T>? {
        if items.isEmpty { return nil }
        let raw = malloc(MemoryLayout<T>.stride * items.count)!
        blocks.append(raw)
        let arr = raw.bindMemory(to: T.self, capacity: items.count)
        for (i, v) in items.enumerated() { (arr + i).initialize(to: v) }
        return UnsafePointer(arr)
    }

    func bytes(_ b: [UInt8]) -> UnsafePointer<UInt8>? {
        if b.isEmpty { return nil }
        let raw = malloc(b.count)!
        blocks.append(raw)
        b.withUnsafeBytes { raw.copyMemory(from: $0.baseAddress!, byteCount: b.count) }
        return UnsafePointer(raw.bindMemory(to: UInt8.self, capacity: b.count))
    }
}
