//! The likely fix for a failed command, shown under the error line: what a person would try
//! first, from the kind of error at the root (an HTTP status from a registry, a registry kiln
//! cannot reach, a RUN that exited non-zero, a permission kiln lacks).
//!
//! Errors that already say what to do (an untrusted certificate names `--registry-certificate`,
//! a 401 with a credential hint names where credentials were looked for) get no second hint.

use kiln_exec::run::RunError;

/// The hint for `err`, if kiln knows one and the message does not already give it.
pub fn hint(err: &anyhow::Error, message: &str) -> Option<String> {
    let hint = err.chain().find_map(|cause| {
        if let Some(registry) = cause.downcast_ref::<kiln_registry::Error>() {
            return registry_hint(registry);
        }
        if let Some(run) = cause.downcast_ref::<RunError>() {
            return run_hint(run);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::PermissionDenied
            && !is_root()
        {
            return Some(
                "kiln is not running as root: RUN needs namespaces and COPY sets owners, as in \
                 Kaniko's container (run it as root, or in the executor image)"
                    .to_owned(),
            );
        }
        None
    })?;
    // Already said: registry errors carry their own advice for certificates and credentials.
    let already = ["pass --", "kiln login", "credentials", "--insecure"]
        .iter()
        .any(|advice| message.contains(advice) && hint.contains(advice));
    (!already).then_some(hint)
}

fn registry_hint(err: &kiln_registry::Error) -> Option<String> {
    use kiln_registry::Error;
    let codes = err.registry_codes();
    match (err, err.status()) {
        (Error::Unreachable { .. }, _) => Some(
            "check the registry's host and port and that it is up; a registry that speaks plain \
             HTTP needs --insecure-pull (pulls), --insecure (pushes) or --insecure-registry HOST"
                .to_owned(),
        ),
        (_, Some(401)) => Some(
            "the registry wants credentials kiln did not have or it refused: run `kiln login \
             HOST`, or check $DOCKER_CONFIG/config.json (see docs/credentials.md)"
                .to_owned(),
        ),
        (_, Some(403)) => Some(
            "the credentials were accepted but do not allow this: check the account's rights on \
             that repository (push needs write access)"
                .to_owned(),
        ),
        (_, Some(404))
            if codes.contains(&"MANIFEST_UNKNOWN") || codes.contains(&"NAME_UNKNOWN") =>
        {
            Some(
                "check the image's name and tag (`skopeo inspect docker://IMAGE` shows what the \
                 registry has)"
                    .to_owned(),
            )
        }
        (_, Some(413)) => Some(
            "a proxy in front of the registry limits request sizes: kiln uploads in 16 MiB \
             chunks, so the limit is below that"
                .to_owned(),
        ),
        (_, Some(429)) => Some(
            "the registry is rate-limiting: log in (anonymous pulls get the lowest limits) or \
             pull through a mirror (--registry-mirror)"
                .to_owned(),
        ),
        (_, Some(status)) if status >= 500 => Some(
            "the registry failed; kiln already retried (--push-retry, --image-download-retry): \
             try again later"
                .to_owned(),
        ),
        _ => None,
    }
}

fn run_hint(err: &RunError) -> Option<String> {
    match err {
        RunError::Exit { .. } | RunError::Signal { .. } => Some(
            "the command's own output, above, says why it failed; `kiln plan` shows its resolved \
             argv, environment, user and working directory"
                .to_owned(),
        ),
        RunError::Spawn { .. } => Some(
            "the program is not in the image or its PATH: check the base image and the stage's ENV \
             PATH (an exec-form RUN [\"...\"] runs no shell)"
                .to_owned(),
        ),
        _ => None,
    }
}

/// Whether kiln runs as root (effective uid 0).
fn is_root() -> bool {
    // `/proc/self/status` would do too; the uid of a file kiln just created is simpler.
    std::fs::metadata("/proc/self")
        .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_points_at_its_output() {
        let err = anyhow::Error::new(RunError::Exit { code: 3 }).context("Dockerfile:2: RUN x");
        let hint = hint(&err, "Dockerfile:2: RUN x: exit code: 3").unwrap();
        assert!(hint.contains("output, above"), "{hint}");
    }

    #[test]
    fn errors_kiln_knows_nothing_about_get_no_hint() {
        let err = anyhow::anyhow!("something else");
        assert_eq!(hint(&err, "something else"), None);
    }
}
