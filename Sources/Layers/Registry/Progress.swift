import Foundation

/// What transfers report while they run; the CLI renders it.
public protocol TransferProgress: AnyObject, Sendable {
    /// An item (a layer, a config) appears; `counter` is updated as bytes move.
    func item(_ id: String, total: Int64, counter: UnsafeMutablePointer<UInt64>?)
    /// Its state changes: "waiting", "downloading", "uploading", "verifying", "unpacking",
    /// "exists", "mounted", "done", "failed".
    func state(_ id: String, _ state: String)
    /// The transfer is over (done or failed): a renderer draws its last.
    func finish()
}

extension TransferProgress {
    public func finish() {}
}

/// A byte counter that a C transfer updates and a renderer reads.
public final class Counter: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<UInt64>
    public init() {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: 0)
    }
    deinit { pointer.deallocate() }
    public var value: UInt64 { pointer.pointee }
}

/// Run `body` for each item on at most `width` threads; the first error is rethrown after
/// every started item finished.
public func parallelEach<T: Sendable>(_ items: [T], width: Int, _ body: @escaping @Sendable (T) throws -> Void) throws {
    if items.isEmpty { return }
    if items.count == 1 || width <= 1 {
        for i in items { try body(i) }
        return
    }
    let st = ParallelState()
    let group = DispatchGroup()
    for _ in 0..<min(width, items.count) {
        group.enter()
        let t = Thread {
            defer { group.leave() }
            while true {
                st.lock.lock()
                if st.firstError != nil || st.next >= items.count { st.lock.unlock(); return }
                let i = st.next
                st.next += 1
                st.lock.unlock()
                do {
                    try body(items[i])
                } catch {
                    st.lock.lock()
                    if st.firstError == nil { st.firstError = error }
                    st.lock.unlock()
                }
            }
        }
        t.stackSize = 4 << 20
        t.start()
    }
    group.wait()
    if let e = st.firstError { throw e }
}

private final class ParallelState: @unchecked Sendable {
    let lock = NSLock()
    var next = 0
    var firstError: Error?
}
