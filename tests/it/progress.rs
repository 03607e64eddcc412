//! What people see: the plain and JSON logs, the `--report` files and the live terminal view of
//! real builds against the real registry, pinned by snapshots once what varies from run to run
//! (digests, keys, times, sizes, ports, paths) is normalised; and a scan proving secret values
//! and registry credentials reach none of them.

use crate::support::{Kiln, Project, Registry};

/// The fixed build: a config step, a COPY and a RUN, on busybox.
fn fixed_project(base: &str) -> Project {
    Project::new()
        .dockerfile(&format!(
            "FROM {base}\nENV GREETING=hello\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /copied\n"
        ))
        .file("hello.txt", "hi\n")
}

#[test]
fn plain_and_json_logs_and_the_reports_of_a_fixed_build_match_their_snapshots() {
    let (registry, base) = Registry::with_busybox();
    let project = fixed_project(&base);
    let cache = project.out("cache");
    let destination = registry.image("progress/app:1");
    let normalise = |text: &str| normalise(text, &registry, &project);

    // Cold: every cacheable step misses because nothing was ever recorded.
    let (digest, log) = Kiln::build_in(project.path(), &cache)
        .push_to(&destination)
        .args(["--cache", "--progress", "plain", "--log-format", "text"])
        .run()
        .success_with_log();
    assert!(
        log.contains(&format!("Pushed {destination}@{}", digest.trim())),
        "{log}"
    );
    insta::assert_snapshot!("plain_log_cold", normalise(&log));

    // Warm, with the copied file changed: the COPY misses naming the file, the RUN after it
    // because an earlier step changed.
    std::fs::write(project.path().join("hello.txt"), "hi again\n").unwrap();
    let report = project.out("report.json");
    let markdown = project.out("report.md");
    let (_, log) = Kiln::build_in(project.path(), &cache)
        .push_to(&destination)
        .args(["--cache", "--progress", "plain", "--log-format", "json"])
        .arg_path("--report", &report)
        .arg_path("--report-markdown", &markdown)
        .run()
        .success_with_log();
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|err| panic!("not a JSON log line ({err}): {line}"));
    }
    insta::assert_snapshot!("json_log_warm", normalise(&log));
    let report_text = std::fs::read_to_string(&report).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&report_text).unwrap();
    assert_eq!(parsed["success"], true);
    assert_eq!(parsed["steps"][1]["cache"], "miss", "{report_text}");
    assert_eq!(
        parsed["steps"][1]["miss_reason"], "file hello.txt changed",
        "{report_text}"
    );
    insta::assert_snapshot!("report_json", normalise(&report_text));
    insta::assert_snapshot!(
        "report_markdown",
        normalise(&std::fs::read_to_string(&markdown).unwrap())
    );
}

#[test]
fn a_failed_build_still_writes_its_report_naming_the_failed_step() {
    let (registry, base) = Registry::with_busybox();
    let project =
        Project::new().dockerfile(&format!("FROM {base}\nRUN true\nRUN exit 3\nRUN true\n"));
    let report = project.out("report.json");
    let stderr = Kiln::build(project.path())
        .push_to(&registry.image("progress/failed:1"))
        .arg_path("--report", &report)
        .run()
        .failure();
    let parsed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(parsed["success"], false, "{parsed}");
    assert!(
        parsed["error"].as_str().unwrap().contains("exit code: 3"),
        "{parsed}\n{stderr}"
    );
    let statuses: Vec<&str> = parsed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["built", "failed", "not-run"], "{parsed}");
}

#[test]
fn secret_values_and_registry_credentials_reach_no_log_or_report() {
    const PASSWORD: &str = "progress-pass-9d1e77";
    const SECRET: &str = "progress-secret-value-51c0ab";
    let registry = Registry::start_with_auth("progress-bot", PASSWORD);
    let base = registry.image("private/busybox:latest");
    let layout = crate::support::base::busybox_layout(registry.scratch());
    let creds = format!("progress-bot:{PASSWORD}");
    crate::support::base::copy_to_registry(&layout, "latest", &base, false, Some(&creds));
    // The RUN checks the secret arrived without the Dockerfile naming its value.
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\nRUN --mount=type=secret,id=token,env=TOKEN [ ${{#TOKEN}} -eq {} ] && touch /ok\n",
        SECRET.len()
    ));
    let docker_config = project.out("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(&creds);
    std::fs::write(
        docker_config.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.addr()
        ),
    )
    .unwrap();
    let report = project.out("report.json");
    let markdown = project.out("report.md");
    let outcome = Kiln::build(project.path())
        .push_to(&registry.image("private/app:1"))
        .env("DOCKER_CONFIG", &docker_config)
        .env("KILN_TEST_TOKEN", SECRET)
        .args(["--secret", "id=token,env=KILN_TEST_TOKEN"])
        .args(["--verbosity", "trace", "--log-format", "json", "--cache"])
        .arg_path("--report", &report)
        .arg_path("--report-markdown", &markdown)
        .run();
    let printed = outcome.everything_printed();
    assert!(outcome.succeeded(), "{printed}");
    assert!(printed.contains("\"event\":\"step.started\""), "{printed}");
    let reports = [
        std::fs::read_to_string(&report).unwrap(),
        std::fs::read_to_string(&markdown).unwrap(),
    ];
    for (name, text) in [
        ("output", &printed),
        ("report", &reports[0]),
        ("markdown", &reports[1]),
    ] {
        for planted in [PASSWORD, auth.as_str(), SECRET] {
            assert!(!text.contains(planted), "{name} holds {planted}:\n{text}");
        }
    }
}

#[test]
fn the_live_view_on_a_terminal_ends_with_the_summary_table_and_the_digest() {
    let (registry, base) = Registry::with_busybox();
    let project = fixed_project(&base);
    let destination = registry.image("progress/live:1");
    let (succeeded, seen) = build_on_a_terminal(
        &project,
        &[
            "--destination",
            &destination,
            "--insecure",
            "--insecure-pull",
        ],
    );
    assert!(succeeded, "{seen}");
    // Drawn live: cursor movements and line clears, not just lines.
    assert!(seen.contains("\u{1b}["), "no terminal drawing:\n{seen}");
    let summary_at = seen
        .rfind("STEP")
        .unwrap_or_else(|| panic!("no summary:\n{seen}"));
    let summary = &seen[summary_at..];
    // The summary is the last thing on screen: nothing is redrawn under it.
    assert!(
        !summary.contains('\u{1b}'),
        "drawn after the summary:\n{summary}"
    );
    let digest = summary
        .lines()
        .find_map(|line| line.trim().strip_prefix("Image "))
        .unwrap_or_else(|| panic!("no image digest in the summary:\n{summary}"));
    // Printed on stdout (the same terminal) as a line of its own, and twice in the summary.
    assert_eq!(
        seen.matches(&format!("{digest}\r\n")).count(),
        3,
        "the digest is not printed on a line of its own:\n{seen}"
    );
    for expected in [
        "CACHE",
        "TIME",
        "LAYER",
        "Dockerfile:4 RUN cat /hello.txt > /copied",
        "Dockerfile:3 COPY hello.txt /hello.txt",
        "Build succeeded",
        &format!("Pushed {destination}@{digest}"),
    ] {
        assert!(
            summary.contains(expected),
            "{expected:?} not in:\n{summary}"
        );
    }
}

#[test]
fn a_plan_as_dot_renders_with_graphviz() {
    let dot = crate::support::tools::require("dot", "graphviz");
    let project = Project::new().dockerfile(
        "FROM scratch AS a\nCOPY x /x\nFROM scratch AS b\nCOPY y /y\nFROM scratch\nCOPY --from=a /x /x\nCOPY --from=b /y /y\n",
    );
    let graph = Kiln::plan(project.path())
        .args(["--format", "dot"])
        .run()
        .success();
    let rendered = project.out("plan.dot");
    std::fs::write(&rendered, &graph).unwrap();
    let svg =
        crate::support::tools::run(std::process::Command::new(dot).arg("-Tsvg").arg(&rendered));
    let svg = String::from_utf8(svg.stdout).unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    for text in [
        "COPY x /x",
        "from=a /x /x",
        "from=b /y /y",
        "stage 2 FROM scratch (target)",
    ] {
        assert!(svg.contains(text), "{text} not drawn:\n{svg}");
    }
}

/// Replaces what varies between runs with placeholders.
fn normalise(text: &str, registry: &Registry, project: &Project) -> String {
    let text = text
        .replace(registry.addr(), "[registry]")
        .replace(&project.path().display().to_string(), "[context]");
    let text = replace_json_strings(&text, &["timestamp"]);
    let text = replace_json_numbers(
        &text,
        &[
            "duration_ms",
            "elapsed_ms",
            "size",
            "layer_size",
            "bytes_pushed",
            "bytes_pulled",
        ],
    );
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let hex = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            .count();
        let boundary = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if boundary && hex == 64 {
            out.push_str("[hex]");
            i += hex;
            continue;
        }
        if boundary && let Some(len) = measure(&chars[i..]) {
            out.push_str("[measure]");
            i += len;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// The length of a duration (`0.4s`, `2m05s`) or a size (`512 B`, `1.5 KiB`) at the start of
/// `chars`, if there is one.
fn measure(chars: &[char]) -> Option<usize> {
    let digits = |from: usize| {
        chars[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut len = digits(0);
    if len == 0 {
        return None;
    }
    if chars.get(len) == Some(&'.') && digits(len + 1) > 0 {
        len += 1 + digits(len + 1);
    } else if chars.get(len) == Some(&'m')
        && digits(len + 1) == 2
        && chars.get(len + 3) == Some(&'s')
    {
        return Some(len + 4);
    }
    let rest: String = chars[len..].iter().take(4).collect();
    let unit = ["s", " B", " KiB", " MiB", " GiB"]
        .into_iter()
        .find(|unit| rest.starts_with(unit))?;
    let end = len + unit.chars().count();
    if chars.get(end).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some(end)
}

/// `"name": 123` (and `"name":123`) with the number replaced, for each of `names`.
fn replace_json_numbers(text: &str, names: &[&str]) -> String {
    let mut text = text.to_owned();
    for name in names {
        for separator in [": ", ":"] {
            let needle = format!("\"{name}\"{separator}");
            let mut out = String::new();
            let mut rest = text.as_str();
            while let Some(at) = rest.find(&needle) {
                let after = at + needle.len();
                out.push_str(&rest[..after]);
                let digits = rest[after..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .count();
                if digits > 0 {
                    out.push_str("[n]");
                }
                rest = &rest[after + digits..];
            }
            out.push_str(rest);
            text = out;
        }
    }
    text
}

/// `"name":"..."` with the string replaced, for each of `names`.
fn replace_json_strings(text: &str, names: &[&str]) -> String {
    let mut text = text.to_owned();
    for name in names {
        let needle = format!("\"{name}\":\"");
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(&needle) {
            let after = at + needle.len();
            out.push_str(&rest[..after]);
            out.push_str("[s]");
            let end = rest[after..]
                .find('"')
                .map_or(rest.len(), |end| after + end);
            rest = &rest[end..];
        }
        out.push_str(rest);
        text = out;
    }
    text
}

#[test]
fn registry_failures_end_with_a_hint_at_the_likely_fix() {
    let registry = Registry::start();
    let project = Project::new().dockerfile(&format!(
        "FROM {}\nRUN true\n",
        registry.image("no/such-image:1")
    ));
    let stderr = Kiln::build(project.path())
        .push_to(&registry.image("hint/app:1"))
        .run()
        .failure();
    assert!(stderr.contains("404"), "{stderr}");
    assert!(
        stderr.contains("hint: check the image's name and tag"),
        "{stderr}"
    );

    let port = crate::support::registry::free_port();
    let project = Project::new().dockerfile(&format!("FROM 127.0.0.1:{port}/base:1\n"));
    let stderr = Kiln::build(project.path())
        .args(["--no-push", "--image-download-retry", "0"])
        .run()
        .failure();
    assert!(stderr.contains("cannot reach registry"), "{stderr}");
    assert!(
        stderr.contains("hint: check the registry's host and port"),
        "{stderr}"
    );
}

#[test]
fn the_live_view_shows_a_running_commands_last_lines_the_snapshot_bytes_and_the_failed_output() {
    let (_registry, base) = Registry::with_busybox();
    let project = Project::new().dockerfile(&format!(
        "FROM {base}\n\
         RUN echo tail-visible && head -c 24000000 /dev/urandom > /big && sleep 1\n\
         RUN echo first-line && echo second-line >&2 && sleep 1 && exit 3\n"
    ));
    let (succeeded, seen) = build_on_a_terminal(&project, &["--no-push", "--insecure-pull"]);
    assert!(!succeeded, "{seen}");
    // Drawn under its step while it ran, never as a bare line of kiln's own output.
    assert!(seen.contains("> tail-visible"), "{seen}");
    assert!(!seen.contains("\ntail-visible"), "{seen}");
    // A 24 MB layer is written with its bytes and rate on the step's line.
    assert!(
        seen.contains(" writing layer ") && seen.contains("MiB at "),
        "{seen}"
    );
    // The failed command's last lines come with the failure, stdout and stderr alike.
    let last = seen
        .find("Last output of RUN echo first-line")
        .unwrap_or_else(|| panic!("no last output:\n{seen}"));
    let after = &seen[last..];
    assert!(after.contains("  first-line\r\n"), "{after}");
    assert!(after.contains("  second-line\r\n"), "{after}");
    assert!(after.contains("Build FAILED"), "{after}");
}

/// `kiln build` of `project` with `flags` on a 120-column pseudo-terminal (`script` gives kiln one
/// for stdout and stderr): whether it succeeded, and the transcript a person would have seen.
fn build_on_a_terminal(project: &Project, flags: &[&str]) -> (bool, String) {
    let script = crate::support::tools::require("script", "bsdutils");
    let cache = tempfile::tempdir().unwrap();
    let kiln = format!(
        "{} build --context {} --cache-dir {} {}",
        env!("CARGO_BIN_EXE_kiln"),
        project.path().display(),
        cache.path().display(),
        flags.join(" ")
    );
    let output = std::process::Command::new(script)
        .args(["--quiet", "--return", "--command", &kiln, "/dev/null"])
        .env_remove("DOCKER_CONFIG")
        .env("HOME", cache.path())
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "120")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}
