import ArgumentParser
import Errors

/// How a failed command ends: its exit status, from the error's code, in one place (docker's
/// conventions). `ctr run` and `ctr exec` exit 125 when ctr itself fails, 126 or 127 when the
/// command cannot be executed, and with the command's own status otherwise; other commands
/// exit 1. A command stopped by a signal exits 128+N. ArgumentParser's usage errors exit 64,
/// as they always have (help: 0).
enum ExitMapping {
    /// The classes of commands, as far as exit statuses go.
    enum Command: Equatable {
        /// `ctr run`.
        case run
        /// `ctr exec`: as run, but a container that is not there or not running is 1, as docker exec.
        case exec
        /// Every other command (a command it runs for the user, as `ctr unshare`'s, still ends
        /// with that command's status).
        case other

        init(_ command: ParsableCommand) {
            switch command {
            case is Run: self = .run
            case is Exec: self = .exec
            default: self = .other
            }
        }
    }

    /// The status a failure with `code` exits with.
    static func of(_ code: CtrError.Code, in command: Command) -> Int32 {
        switch (code, command) {
        case (.container(let status), _): return status
        case (.interrupted(let signal), _): return 128 + signal
        case (_, .run): return 125
        case (.notFound, .exec), (.conflict, .exec): return 1
        case (_, .exec): return 125
        case (_, .other): return 1
        }
    }

    /// The exit status for `error` and the text to print (nil: nothing; on stdout when the
    /// status is 0, as help is). `stopSignal` is the signal that stopped the command, if any
    /// (0: none): the command's partial writes are gone, and it ends as the signal asked.
    static func outcome(for error: any Error, in command: Command, stopSignal: Int32) -> (status: Int32, text: String?) {
        if stopSignal != 0 { return (of(.interrupted(signal: stopSignal), in: command), nil) }
        if let e = error as? CtrError {
            return (of(e.code, in: command), e.message.isEmpty ? nil : "Error: \(e.description)")
        }
        // ArgumentParser's own (usage, help, ExitCode) keep its status and text
        let text = CTR.fullMessage(for: error)
        let status = CTR.exitCode(for: error)
        if status != .failure || error is ExitCode { return (status.rawValue, text.isEmpty ? nil : text) }
        // an error that is not ctr's (Foundation's): as ArgumentParser prints it, ctr's own failure
        return (of(.internal, in: command), text.isEmpty ? nil : text)
    }
}
