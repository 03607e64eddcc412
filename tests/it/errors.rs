//! Bad input fails with a message that names what is wrong and where, and pushes nothing.

use crate::support::registry::free_port;
use crate::support::tools::exists;
use crate::support::{Kiln, Project, Registry};

#[test]
fn an_unknown_instruction_is_reported_with_file_line_and_column() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!("FROM {base}\n\n  FROBNICATE the build\n"));
    let destination = registry.image("bad:1");
    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .run()
        .failure();
    assert!(stderr.contains("Dockerfile:3:3"), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("unknown instruction"),
        "{stderr}"
    );
    assert!(stderr.contains("FROBNICATE the build"), "{stderr}");
    assert!(!exists(&destination));
}

#[test]
fn an_unreachable_registry_is_named_in_the_error() {
    let project = Project::new().dockerfile(&format!(
        "FROM 127.0.0.1:{}/nothing/here:1\nRUN true\n",
        free_port()
    ));
    let stderr = Kiln::build(project.path())
        .args(["--no-push", "--insecure-pull"])
        .run()
        .failure();
    assert!(stderr.contains("127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("nothing/here"), "{stderr}");
    assert!(stderr.contains("cannot reach registry"), "{stderr}");
}

#[test]
fn a_missing_base_image_names_the_image_registry_and_status() {
    let (registry, _) = Registry::with_busybox();
    let missing = registry.image("does-not-exist:1");
    let project = Project::new().dockerfile(&format!("FROM {missing}\n"));
    let destination = registry.image("out:1");
    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .run()
        .failure();
    assert!(stderr.contains(&missing), "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");
    assert!(!exists(&destination));
}

#[test]
fn a_failing_run_fails_the_build_names_the_line_and_pushes_nothing() {
    let (registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nRUN echo fine\nRUN echo failing && exit 3\nRUN echo never\n"
    ));
    let destination = registry.image("broken:1");
    let stderr = Kiln::build(project.path())
        .push_to(&destination)
        .run()
        .failure();
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
    assert!(stderr.contains("exit code: 3"), "{stderr}");
    assert!(
        !stderr.contains("never\n"),
        "later steps must not run: {stderr}"
    );
    assert!(!exists(&destination));
}

#[test]
fn a_missing_copy_source_names_the_file() {
    let project = Project::new().dockerfile("FROM scratch\nCOPY nope.txt /\n");
    let stderr = Kiln::build(project.path())
        .args(["--no-push"])
        .run()
        .failure();
    assert!(stderr.contains("nope.txt"), "{stderr}");
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
}

#[test]
fn a_push_to_an_unreachable_registry_fails_after_building_and_names_it() {
    let project = Project::new()
        .dockerfile("FROM scratch\nCOPY a /a\n")
        .file("a", "a");
    let destination = format!("127.0.0.1:{}/app:1", free_port());
    let digest_file = project.out("digest");
    let stderr = Kiln::build(project.path())
        .args(["--destination", &destination, "--insecure"])
        .arg_path("--digest-file", &digest_file)
        .run()
        .failure();
    assert!(
        stderr.contains(&destination[..destination.find('/').unwrap()]),
        "{stderr}"
    );
    assert!(
        !digest_file.exists(),
        "no digest file for an image that was not pushed"
    );
}

#[test]
fn missing_destination_without_no_push_is_refused_before_building() {
    let project = Project::new().dockerfile("FROM scratch\n");
    let stderr = Kiln::build(project.path()).run().failure();
    assert!(stderr.contains("--destination"), "{stderr}");
}

#[test]
fn front_end_mistakes_name_file_line_and_column_and_push_nothing() {
    let (registry, base) = Registry::with_busybox();
    let sum = format!("sha256:{}", "0".repeat(64));
    let cases = [
        (
            format!("FROM {base}\n\n  RUN <<EOF\necho never ends\n"),
            "Dockerfile:3:3",
            "unterminated heredoc",
        ),
        (
            format!("FROM {base}\n COPY --chmod=u+q a /a\n"),
            "Dockerfile:2:2",
            "invalid chmod parameter: 'u+q'",
        ),
        (
            format!("FROM {base}\nRUN --mount=type=nfs,target=/x true\n"),
            "Dockerfile:2:1",
            "unsupported mount type",
        ),
        (
            format!("FROM {base}\nRUN --network=bridge true\n"),
            "Dockerfile:2:1",
            "unsupported network mode",
        ),
        (
            format!("FROM {base}\n\nADD --checksum={sum} a /a\n"),
            "Dockerfile:3:1",
            "checksum can't be specified for non-HTTP(S) sources",
        ),
        (
            format!("FROM {base}\nCOPY a <<EOF\nx\nEOF\n"),
            "Dockerfile:2:1",
            "cannot accept a heredoc as a destination",
        ),
    ];
    for (dockerfile, position, message) in cases {
        let project = Project::new().dockerfile(&dockerfile).file("a", "a");
        let destination = registry.image("frontend-bad:1");
        let stderr = Kiln::build(project.path())
            .push_to(&destination)
            .run()
            .failure();
        assert!(stderr.contains(position), "{position} missing in {stderr}");
        assert!(stderr.contains(message), "{message} missing in {stderr}");
        assert!(!exists(&destination));
    }
}
