import Errors
import Foundation

/// Naming and removing images: `ctr tag` and `ctr rmi`'s policy (as docker and podman).
public enum ImageNames {
    /// Give `image` more names. A name with a digest is refused, before any name is set.
    public static func tag(_ image: ImageRecord, as names: [Reference], in store: Store) throws {
        for n in names where n.digest != nil {
            throw CtrError.usage("\(n.string): a tag cannot contain a digest")
        }
        try store.writing { for n in names { try store.setName(n, to: image.descriptor) } }
    }

    /// A container's hold on an image: its last name stays unless `rmi --force`.
    public struct ContainerUse: Sendable, Equatable {
        public var imageID: Digest
        public var name: String
        public var id: String
        public init(imageID: Digest, name: String, id: String) {
            self.imageID = imageID
            self.name = name
            self.id = id
        }
    }

    /// What `rmi` is given: names and ids, or every image (`--all`).
    public enum Removal: Sendable, Equatable {
        case images([String])
        case all
    }

    /// What `rmi` did, in order.
    public enum Removed: Sendable, Equatable {
        /// A name was taken off its image.
        case untagged(Reference)
        /// An image lost its last name: it goes (its blobs with the prune that follows).
        case deleted(imageID: Digest)
    }

    /// Why `rmi` leaves an image alone (`.conflict`): given by id, the image has several names,
    /// and neither --force nor --all.
    static func refusal(severalNames s: String, names: [String]) -> CtrError {
        .conflict("\(s): the image has \(names.count) names (\(names.joined(separator: ", "))); remove them by name or use --force")
    }

    /// The image's last name, and a container uses it.
    static func refusal(inUse s: String, container c: ContainerUse) -> CtrError {
        .conflict("\(s): the image is in use by container \(c.name) (\(c.id.prefix(12))): remove the container first, or use --force")
    }

    /// `ctr rmi`. A name removes that name; an id (or digest) removes every name of the image,
    /// which an image of several names allows only with `force` (or for `.all`). The last name
    /// of an image a container in `inUse` holds stays unless `force`. Every image is tried and
    /// the failures come at the end (one error: each image's, joined by "; ", with the first's
    /// code and as its cause), as docker and podman do; `removed` hears
    /// what was done as it is done. When an image went, the store is pruned (`waiting`: it
    /// waits for other writers).
    public static func remove(_ what: Removal, from store: Store, inUse: [ContainerUse], force: Bool,
                              removed: (Removed) -> Void, waiting: @escaping () -> Void) throws {
        let everything: Bool
        let targets: [String]
        switch what {
        case .images(let names):
            everything = false
            targets = names
        case .all:
            everything = true
            targets = Array(Set(try store.images().map { $0.descriptor.digest.string })).sorted()
        }
        var removedManifests = Set<Digest>()
        var failures: [(image: String, error: any Error)] = []
        for s in targets {
            do {
                let r = try store.resolve(s)
                let all = try store.images().filter { $0.descriptor.digest == r.descriptor.digest }
                let ref = try? Reference(parsing: s)
                let byName = ref.map { ref in all.contains { $0.name == ref } } ?? false
                let victims = byName ? all.filter { $0.name == ref } : all
                if !byName && all.count > 1 && !force && !everything {
                    throw refusal(severalNames: s, names: all.compactMap { $0.name?.familiar })
                }
                // the last name of an image a container uses stays, unless forced
                if victims.count == all.count, !force, let id = try? store.imageID(r),
                   let c = inUse.first(where: { $0.imageID == id }) {
                    throw refusal(inUse: s, container: c)
                }
                try store.updateIndex { records in
                    records.removeAll { rec in victims.contains { $0.name == rec.name && $0.descriptor.digest == rec.descriptor.digest } }
                }
                for v in victims { if let n = v.name { removed(.untagged(n)) } }
                if try !store.images().contains(where: { $0.descriptor.digest == r.descriptor.digest }) {
                    removedManifests.insert(r.descriptor.digest)
                    if let id = try? store.imageID(r) { removed(.deleted(imageID: id)) }
                }
            } catch {
                failures.append((s, error))
            }
        }
        if !removedManifests.isEmpty { _ = try store.prune(waiting: waiting) }
        if let first = failures.first {
            throw CtrError.wrapping(first.error, failures.map { "\($0.error)" }.joined(separator: "; "))
        }
    }
}
