//! The formatter's contract: formatting a Dockerfile and parsing the text again gives the same
//! instructions, for generated Dockerfiles covering every instruction, flag and heredoc shape.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::super::{ArgDecl, Heredoc, KeyValue, parse};
use super::*;
use crate::mount::{Mount, NetworkMode, SecurityMode};

fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.-]{0,6}"
}

fn path() -> impl Strategy<Value = String> {
    ("/?", vec(word(), 1..4)).prop_map(|(root, parts)| format!("{root}{}", parts.join("/")))
}

fn text() -> impl Strategy<Value = String> {
    vec(word(), 1..4).prop_map(|w| w.join(" "))
}

fn heredoc() -> impl Strategy<Value = Heredoc> {
    (
        "[A-Z]{1,4}",
        any::<bool>(),
        any::<bool>(),
        vec(text(), 0..3),
    )
        .prop_map(|(name, expand, chomp, lines)| Heredoc {
            name,
            expand,
            chomp,
            content: lines.iter().map(|l| format!("{l}\n")).collect(),
        })
}

fn heredoc_marker(doc: &Heredoc) -> String {
    marker(doc)
}

fn command() -> impl Strategy<Value = CommandLine> {
    prop_oneof![
        text().prop_map(CommandLine::Shell),
        vec("[ -~]{0,8}", 0..3).prop_map(CommandLine::Exec),
    ]
}

fn mount() -> impl Strategy<Value = Mount> {
    prop_oneof![
        Just("type=bind,target=/src,from=build,rw"),
        Just("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=700,uid=1,gid=2"),
        Just("type=tmpfs,target=/tmp,size=1024"),
        Just("type=secret,id=token,env=TOKEN,required"),
        Just("type=ssh"),
    ]
    .prop_map(|text| Mount::parse(text).expect("valid mount"))
}

fn run() -> impl Strategy<Value = InstructionKind> {
    (
        command(),
        vec(heredoc(), 0..3),
        vec(mount(), 0..3),
        option::of(prop_oneof![
            Just(NetworkMode::Default),
            Just(NetworkMode::None),
            Just(NetworkMode::Host)
        ]),
        option::of(prop_oneof![
            Just(SecurityMode::Sandbox),
            Just(SecurityMode::Insecure)
        ]),
    )
        .prop_map(|(command, heredocs, mounts, network, security)| {
            let command = if heredocs.is_empty() {
                command
            } else {
                let markers: Vec<String> = heredocs.iter().map(heredoc_marker).collect();
                match heredocs.len() {
                    1 => CommandLine::Shell(markers[0].clone()),
                    _ => CommandLine::Shell(format!("cat {}", markers.join(" "))),
                }
            };
            InstructionKind::Run(RunInstruction {
                command,
                heredocs,
                mounts,
                network,
                security,
            })
        })
}

fn chmod() -> impl Strategy<Value = Option<String>> {
    option::of(prop_oneof![
        Just("755".to_owned()),
        Just("u+x".to_owned()),
        Just("g-w,o=r".to_owned()),
        Just("a+X".to_owned()),
    ])
}

fn copy() -> impl Strategy<Value = InstructionKind> {
    (
        (option::of(word()), option::of(word()), chmod()),
        (any::<bool>(), any::<bool>(), vec(word(), 0..3)),
        (vec(path(), 0..3), vec(heredoc(), 0..3), path()),
    )
        .prop_filter("a COPY needs a source", |(_, _, (paths, docs, _))| {
            !paths.is_empty() || !docs.is_empty()
        })
        .prop_map(
            |((from, chown, chmod), (link, parents, excludes), (sources, heredocs, dest))| {
                InstructionKind::Copy(CopyInstruction {
                    from,
                    chown,
                    chmod,
                    link,
                    parents,
                    excludes,
                    sources,
                    heredocs,
                    dest,
                })
            },
        )
}

fn add() -> impl Strategy<Value = InstructionKind> {
    (
        (
            option::of(word()),
            chmod(),
            any::<bool>(),
            vec(word(), 0..2),
        ),
        (
            option::of(Just(format!("sha256:{}", "0f".repeat(32)))),
            option::of(any::<bool>()),
        ),
        (vec(path(), 1..3), path()),
    )
        .prop_map(
            |((chown, chmod, link, excludes), (checksum, keep_git_dir), (sources, dest))| {
                InstructionKind::Add(AddInstruction {
                    chown,
                    chmod,
                    link,
                    excludes,
                    checksum,
                    keep_git_dir,
                    sources,
                    heredocs: Vec::new(),
                    dest,
                })
            },
        )
}

fn pairs() -> impl Strategy<Value = Vec<KeyValue>> {
    prop_oneof![
        vec(
            (
                "[A-Za-z_][A-Za-z0-9_]{0,5}",
                prop_oneof![word(), text().prop_map(|t| format!("\"{t}\""))]
            ),
            1..4
        )
        .prop_map(|kv| kv
            .into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect()),
        ("[A-Z]{1,4}", text()).prop_map(|(key, value)| vec![KeyValue { key, value }]),
    ]
}

fn healthcheck() -> impl Strategy<Value = InstructionKind> {
    let seconds = || option::of((1i64..100).prop_map(|s| s * 1_000_000_000));
    prop_oneof![
        Just(Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        }),
        (
            (seconds(), seconds(), seconds(), seconds()),
            option::of(1i64..10),
            prop_oneof![
                vec(word(), 1..3)
                    .prop_map(|argv| { std::iter::once("CMD".to_owned()).chain(argv).collect() }),
                text().prop_map(|t| vec!["CMD-SHELL".to_owned(), t]),
            ],
        )
            .prop_map(
                |((interval, timeout, start_period, start_interval), retries, test)| {
                    Healthcheck {
                        test,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    }
                }
            ),
    ]
    .prop_map(InstructionKind::Healthcheck)
}

fn instruction() -> impl Strategy<Value = InstructionKind> {
    prop_oneof![
        run(),
        copy(),
        add(),
        healthcheck(),
        command().prop_map(InstructionKind::Cmd),
        command().prop_map(InstructionKind::Entrypoint),
        vec(word(), 1..3).prop_map(InstructionKind::Shell),
        pairs().prop_map(InstructionKind::Env),
        pairs().prop_map(InstructionKind::Label),
        vec(("[A-Z_]{1,5}", option::of(word())), 1..3).prop_map(|decls| {
            InstructionKind::Arg(
                decls
                    .into_iter()
                    .map(|(name, default)| ArgDecl { name, default })
                    .collect(),
            )
        }),
        vec(
            prop_oneof![Just("80"), Just("53/udp"), Just("8000-8002/tcp")],
            1..3
        )
        .prop_map(|p| InstructionKind::Expose(p.into_iter().map(str::to_owned).collect())),
        vec(prop_oneof![path(), text()], 1..3).prop_map(InstructionKind::Volume),
        word().prop_map(InstructionKind::User),
        path().prop_map(InstructionKind::Workdir),
        Just(InstructionKind::StopSignal("SIGTERM".into())),
        text().prop_map(InstructionKind::Maintainer),
    ]
}

fn from() -> impl Strategy<Value = InstructionKind> {
    (
        word(),
        option::of("[a-z][a-z0-9]{0,5}"),
        option::of(Just("$BUILDPLATFORM".to_owned())),
    )
        .prop_map(|(image, name, platform)| {
            InstructionKind::From(FromInstruction {
                image,
                name,
                platform,
            })
        })
}

fn dockerfile() -> impl Strategy<Value = (char, Vec<InstructionKind>)> {
    (
        prop_oneof![Just('\\'), Just('`')],
        from(),
        vec(instruction(), 0..8),
    )
        .prop_map(|(escape, first, rest)| (escape, std::iter::once(first).chain(rest).collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn formatting_then_parsing_gives_the_same_instructions((escape, kinds) in dockerfile()) {
        let df = Dockerfile {
            file: "Dockerfile".into(),
            escape,
            instructions: kinds
                .iter()
                .map(|kind| Instruction { line: 0, column: 0, text: String::new(), kind: kind.clone() })
                .collect(),
            directives: super::super::Directives { escape, ..Default::default() },
        };
        let text = df.to_string();
        let parsed = parse(&text, "Dockerfile")
            .map_err(|e| TestCaseError::fail(format!("{e}\n--- formatted:\n{text}")))?;
        let again: Vec<InstructionKind> = parsed.instructions.into_iter().map(|i| i.kind).collect();
        prop_assert_eq!(again, kinds, "formatted:\n{}", text);
        prop_assert_eq!(parsed.escape, escape);
    }
}

#[test]
fn a_parsed_dockerfile_formats_to_canonical_text() {
    let df = parse(
        "from --platform=$BUILDPLATFORM alpine as Build\nrun --network=none <<-EOF\n\techo hi\n\tEOF\ncopy --chmod=u+x --link <<'a' /d/\n$x\na\n",
        "Dockerfile",
    )
    .expect("parses");
    assert_eq!(
        df.to_string(),
        "FROM --platform=$BUILDPLATFORM alpine AS build\nRUN --network=none <<-EOF\n\techo hi\nEOF\nCOPY --chmod=u+x --link <<'a' /d/\n$x\na\n"
    );
}

/// Inputs the fuzz target (`scripts/fuzz`) found, kept as regression tests.
#[test]
fn fuzz_findings_round_trip() {
    let cases = [
        // crash-3043cacc: a continuation at the end of the file leaves a trailing escape.
        format!("FROM aG-mnt=tscrar[\"/sr+ype{}\n", "\\".repeat(18)),
        // crash-9d2f: the last instruction ends in an escaped tab.
        "FROM a AS b\nARG X=1\t\t\t\t\t\t\t\t\\\\\\\\\\\\\\\\\\\t\t\t\t\t\t\t\t\t\\\\\t".to_owned(),
        // crash-df4b4e79: `--` ends the flags, and a source that looks like a flag follows.
        "FROM a\nCOPY --chmod=u+x -- --mount=type=cache,x <<one ./a/./b /d/\0\nhi\none\n"
            .to_owned(),
        "FROM a\nRUN -- --help\nENV -- --A=1\nUSER -- --x\n".to_owned(),
        // crash-8b0c: an ENV key with a quoted blank, then a value with an unquoted one.
        "FROM a\nENV [\"/sr )()))rY  -chmd+o=ugistry (r JJ\n".to_owned(),
        // An ONBUILD trigger after `--` is scanned for heredocs like any other.
        "FROM a\nONBUILD ADD [\"<<a\", \"/d\"]\n".to_owned(),
        // crash-5f1e: a source with an unbalanced quote before a heredoc marker.
        "FROM a\nADD X=$--parents <<one ./a&.'b /d&\nhi\none\n".to_owned(),
        "FROM a\nCOPY --chown='a\\' <<one /d\nhi\none\n".to_owned(),
        "FROM a\nCOPY --chown='a\"b' --from=\"u'x\" [\"<<EOF\", \"/d\"]\nCOPY <<\"a'b\" /d\nx\na'b\n".to_owned(),
    ];
    for input in cases {
        let df = parse(&input, "Dockerfile").expect("parses");
        let text = df.to_string();
        let again = parse(&text, "Dockerfile").expect("formatted text parses");
        let kinds = |d: &Dockerfile| {
            d.instructions
                .iter()
                .map(|i| i.kind.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(&again), kinds(&df), "formatted:\n{text}");
    }
}
