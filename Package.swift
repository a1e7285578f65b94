// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "ctr",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ctr", targets: ["ctr"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // The one error type (CtrError: a code to act on, a one-line message, stage and errno,
        // file and line, a cause). No dependencies: every other target throws it.
        .target(name: "Errors"),
        // C: namespaces, mounts, seccomp, capabilities, tar (libarchive), hashing (OpenSSL),
        // compression (ISA-L gzip, zstd). Everything that runs after fork()/clone() lives here.
        .target(
            name: "CSysShims",
            exclude: ["stub"],  // the exec stub's source: built by scripts/gen-exec-stub.sh, embedded as bytes
            cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-O2"])],
            linkerSettings: [
                .linkedLibrary("dl"),
            ]
        ),
        // Typed wrappers over the shim: errno, starting programs (Command: the one spawner),
        // user-namespace id maps, running a C job inside a mapped user namespace.
        .target(name: "HostOS", dependencies: ["Errors", "CSysShims"]),
        // Dockerfile syntax: parser, word expansion, .dockerignore patterns. Pure Swift.
        .target(name: "Dockerfile", dependencies: ["Errors"]),
        // TOML documents (registries.conf), with the line of every key. Pure Swift.
        .target(name: "TOML", dependencies: ["Errors"]),
        // Image store, OCI types, layers, archives, the registry client.
        .target(name: "Layers", dependencies: ["Errors", "HostOS", "CSysShims", "TOML", "Dockerfile"]),
        // Running a process from an image in namespaces.
        .target(name: "Sandbox", dependencies: ["Errors", "Layers", "HostOS", "CSysShims"]),
        // ctr build: stages, RUN in the sandbox, COPY/ADD, the build cache, outputs.
        .target(name: "Builder", dependencies: ["Errors", "Dockerfile", "Layers", "Sandbox", "HostOS", "CSysShims"]),
        // pbrx's build-images: Python project metadata, bindep.txt, the Dockerfile it builds. Pure Swift.
        .target(name: "PyImages", dependencies: ["Errors", "TOML"]),
        .executableTarget(
            name: "ctr",
            dependencies: [
                "Errors", "Builder", "Dockerfile", "Layers", "Sandbox", "HostOS", "CSysShims", "PyImages",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "ErrorsTests", dependencies: ["Errors"]),
        .testTarget(name: "LayersTests", dependencies: ["Errors", "Layers", "HostOS"]),
        .testTarget(name: "TOMLTests", dependencies: ["Errors", "TOML"]),
        .testTarget(name: "HostOSTests", dependencies: ["Errors", "HostOS", "CSysShims"]),
        .testTarget(name: "SandboxTests", dependencies: ["Errors", "Sandbox", "Layers", "HostOS", "CSysShims"]),
        .testTarget(name: "DockerfileTests", dependencies: ["Errors", "Dockerfile"]),
        .testTarget(name: "BuilderTests", dependencies: ["Errors", "Builder", "Dockerfile", "Layers", "Sandbox", "HostOS"]),
        .testTarget(name: "PyImagesTests", dependencies: ["Errors", "PyImages", "TOML"]),
        .testTarget(name: "CtrTests", dependencies: ["CSysShims", "HostOS"]),
        // the CLI's own logic (the two `ctr run` parsers agree, errors to exit statuses)
        .testTarget(name: "CLITests", dependencies: ["ctr", "Errors", "Sandbox", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
    ]
)
