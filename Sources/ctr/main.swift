import ArgumentParser
import Foundation

// Global options may come before the subcommand (`ctr --root DIR images`); ArgumentParser
// wants them on the subcommand, so move them behind the subcommand path.
let argv = GlobalOptions.hoist(Array(CommandLine.arguments.dropFirst()), root: CTR.self)
CTR.runMain(argv)
