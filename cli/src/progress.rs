//! Rendering blob transfer progress. For now a debug log line per report (the registry client
//! reports every few MiB per blob); a live display comes with the terminal UI.

use kiln_registry::{Direction, Progress, TransferProgress};

/// The callback handed to the registry client.
pub fn renderer() -> Progress {
    Progress::new(log)
}

fn log(progress: &TransferProgress<'_>) {
    let verb = match progress.direction {
        Direction::Pull => "pulled",
        Direction::Push => "pushed",
    };
    match progress.total {
        Some(total) => tracing::debug!(
            "{} {verb} {}/{} bytes ({}%)",
            progress.blob,
            progress.done,
            total,
            (progress.done * 100).checked_div(total).unwrap_or(100)
        ),
        None => tracing::debug!("{} {verb} {} bytes", progress.blob, progress.done),
    }
}
