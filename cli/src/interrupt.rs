//! SIGINT/SIGTERM: stop the build, leave nothing behind, exit non-zero.
//!
//! On the first signal every running `RUN` is stopped (`kiln_exec::run::cancel`: its whole pid
//! namespace is killed and its mount namespace goes with it) and no new one starts; the stage
//! executor stops before its next step. While the blocking part of the build (the stages) is
//! still unwinding, kiln waits for it, so root filesystems are moved to the trash only once
//! nothing uses them; any other part (pulls, pushes) is dropped at once. Nothing is pushed or
//! written to a destination after the signal: a push in flight is abandoned before its manifest,
//! which is what moves a tag. A second signal exits without waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

/// Number of blocking build phases in progress (see [`BlockingPhase`]).
static BLOCKING: AtomicUsize = AtomicUsize::new(0);

/// The build was stopped by a signal (`number` is its Linux number: SIGINT 2, SIGTERM 15).
#[derive(Debug)]
pub struct Interrupted {
    name: &'static str,
    number: i32,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}: the build was stopped", self.name)
    }
}

impl std::error::Error for Interrupted {}

impl Interrupted {
    /// The exit status a shell gives a process killed by the signal: 128 + its number.
    pub fn exit_code(&self) -> u8 {
        u8::try_from(128 + self.number).unwrap_or(1)
    }
}

/// Marks a blocking phase that uses the work directory: while one is alive, an interrupted
/// build waits for it to unwind instead of dropping it.
pub struct BlockingPhase(());

impl BlockingPhase {
    pub fn enter() -> BlockingPhase {
        BLOCKING.fetch_add(1, Ordering::SeqCst);
        BlockingPhase(())
    }
}

impl Drop for BlockingPhase {
    fn drop(&mut self) {
        BLOCKING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether the build was asked to stop.
pub fn requested() -> bool {
    kiln_exec::run::cancel::is_cancelled()
}

/// Runs `work` until it ends or kiln receives SIGINT or SIGTERM.
pub async fn guard(work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
        (Err(err), _) | (_, Err(err)) => {
            return Err(anyhow::Error::new(err).context("installing the SIGINT/SIGTERM handler"));
        }
    };
    let mut work = std::pin::pin!(work);
    let stopped = tokio::select! {
        result = &mut work => return result,
        _ = interrupt.recv() => Interrupted { name: "SIGINT", number: 2 },
        _ = terminate.recv() => Interrupted { name: "SIGTERM", number: 15 },
    };
    tracing::warn!("{}: stopping the build", stopped.name);
    kiln_exec::run::cancel::cancel_all();
    while BLOCKING.load(Ordering::SeqCst) > 0 {
        tokio::select! {
            _ = &mut work => break,
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    Err(stopped.into())
}
