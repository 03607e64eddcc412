//! Stopping every running `RUN` at once, for kiln's SIGINT/SIGTERM handling.
//!
//! Each sandbox's middle process (kiln's direct child) is registered while it runs. Cancelling
//! sends it SIGTERM, which it answers by SIGKILLing the namespace's init and waiting until the
//! kernel has killed every process of the pid namespace; the mount namespace, and with it every
//! mount the RUN made, goes away with the middle process. So when [`super::run`] returns
//! [`super::RunError::Cancelled`], nothing of the command is left. Commands started after
//! [`cancel_all`] are refused.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::process::{Pid, Signal};

static CANCELLED: AtomicBool = AtomicBool::new(false);
static RUNNING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Stops every running sandbox and refuses new ones, for the rest of the process's life.
pub fn cancel_all() {
    CANCELLED.store(true, Ordering::SeqCst);
    let running = RUNNING.lock().map(|set| set.clone()).unwrap_or_default();
    for pid in running {
        terminate(pid);
    }
}

/// Whether [`cancel_all`] was called.
pub fn is_cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// A running sandbox's middle process, registered until dropped.
pub(super) struct Registered(i32);

impl Registered {
    /// Registers `pid`; if a cancellation raced with the spawn, stops it at once.
    pub(super) fn new(pid: u32) -> Registered {
        let pid = i32::try_from(pid).unwrap_or(i32::MAX);
        if let Ok(mut set) = RUNNING.lock() {
            set.insert(pid);
        }
        if is_cancelled() {
            terminate(pid);
        }
        Registered(pid)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut set) = RUNNING.lock() {
            set.remove(&self.0);
        }
    }
}

fn terminate(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        // The pid stays ours until we reap it (we hold it registered until then), so this
        // cannot hit an unrelated process.
        let _ = rustix::process::kill_process(pid, Signal::TERM);
    }
}
