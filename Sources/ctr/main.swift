import ArgumentParser
import CSysShims
import Foundation

// Global options may come before the subcommand (`ctr --root DIR images`); ArgumentParser
// wants them on the subcommand, so move them behind the subcommand path.
signal(SIGPIPE, SIG_IGN) // a layer child that stops reading must not kill ctr
csys_signals_init()       // INT, TERM, … are forwarded to a running container, else act as usual
let rawArgs = Array(CommandLine.arguments.dropFirst())
if rawArgs.contains("run"), let fast = FastRun.parse(rawArgs) { CTR.finish(.run) { try FastRun.run(fast) } }
let argv = GlobalOptions.hoist(Array(CommandLine.arguments.dropFirst()), root: CTR.self)
CTR.runMain(argv)
