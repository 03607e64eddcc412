//! Blob transfer progress: the registry client's callback, turned into build events
//! ([`crate::events::Event::Transfer`]) that the plain log, the live view and the report render.

use kiln_registry::Progress;

/// The callback handed to the registry client.
pub fn renderer() -> Progress {
    Progress::new(|progress| crate::events::emit(crate::events::Event::Transfer(progress)))
}
