//! Environment lookups, passed as a function so credential sources can be tested with a
//! fixed table instead of the process environment.

/// Looks a variable up; empty values count as unset (as in the cloud SDKs).
pub(crate) type Vars<'a> = &'a (dyn Fn(&str) -> Option<String> + Send + Sync);

/// The process environment, empty values filtered out.
pub(crate) fn process(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
