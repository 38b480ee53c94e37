//! What the examples share: the end of their `main`.

use std::fmt::Display;
use std::process::ExitCode;

/// Success for `Ok`; for an error, prints `error: ...` to stderr and returns
/// `code` (2 for a usage error, 1 for a run that failed).
pub fn exit(result: Result<(), impl Display>, code: u8) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(code)
        }
    }
}
