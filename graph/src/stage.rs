//! Stage declarations: the FROM line, its resolved base and the instructions of each stage,
//! before any base image config is known.

use crate::platform::Platform;
use crate::syntax::Instruction;

/// What a stage builds on, by Dockerfile stage index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeclBase {
    Scratch,
    Image(String),
    Stage(usize),
}

/// Where `COPY --from` reads, by Dockerfile stage index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CopySource {
    Stage(usize),
    Image(String),
}

/// One stage as declared.
#[derive(Debug, Clone)]
pub(crate) struct StageDecl<'a> {
    pub index: usize,
    pub name: Option<String>,
    pub base: DeclBase,
    /// `FROM --platform`, resolved: the target, or the build platform.
    pub platform: Platform,
    pub from: &'a Instruction,
    pub body: &'a [Instruction],
    /// Stages this one copies from (Dockerfile indexes).
    pub copy_stages: Vec<usize>,
    /// Images this one copies from.
    pub copy_images: Vec<String>,
}

impl StageDecl<'_> {
    /// Every stage this one needs built first.
    pub(crate) fn dependencies(&self) -> impl Iterator<Item = usize> + '_ {
        let base = match self.base {
            DeclBase::Stage(i) => Some(i),
            _ => None,
        };
        base.into_iter().chain(self.copy_stages.iter().copied())
    }
}

/// Resolves a `COPY --from` value seen in stage `current`: a stage index, the name of an
/// earlier stage, or else an image reference (as BuildKit does). Referring to the stage itself
/// or to a later one is an error, because it could never be built.
pub(crate) fn resolve_copy_from(
    value: &str,
    current: usize,
    names: &[Option<String>],
) -> Result<CopySource, String> {
    if let Ok(index) = value.parse::<usize>() {
        return match index {
            i if i < current => Ok(CopySource::Stage(i)),
            i if i == current => Err(format!(
                "COPY --from={value}: a stage cannot copy from itself"
            )),
            i if i < names.len() => Err(format!(
                "COPY --from={value}: stage {i} is defined after the current stage {current}; it needs to be defined before"
            )),
            _ => Err(format!(
                "COPY --from={value}: invalid stage index, the Dockerfile has {} stages",
                names.len()
            )),
        };
    }
    let lower = value.to_ascii_lowercase();
    match names
        .iter()
        .position(|n| n.as_deref() == Some(lower.as_str()))
    {
        Some(i) if i < current => Ok(CopySource::Stage(i)),
        Some(i) if i == current => Err(format!(
            "COPY --from={value}: a stage cannot copy from itself (circular dependency)"
        )),
        Some(_) => Err(format!(
            "COPY --from={value}: stage {value:?} is defined after this one; it needs to be defined before"
        )),
        None => Ok(CopySource::Image(value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_from_resolves_earlier_stages_and_falls_back_to_images() {
        let names = vec![Some("build".to_owned()), None, Some("final".to_owned())];
        assert_eq!(resolve_copy_from("0", 2, &names), Ok(CopySource::Stage(0)));
        assert_eq!(
            resolve_copy_from("BUILD", 2, &names),
            Ok(CopySource::Stage(0))
        );
        assert_eq!(
            resolve_copy_from("alpine:3", 2, &names),
            Ok(CopySource::Image("alpine:3".into()))
        );
        assert!(resolve_copy_from("2", 2, &names).is_err_and(|e| e.contains("itself")));
        assert!(resolve_copy_from("final", 0, &names).is_err_and(|e| e.contains("defined after")));
        assert!(
            resolve_copy_from("7", 2, &names).is_err_and(|e| e.contains("invalid stage index"))
        );
    }
}
