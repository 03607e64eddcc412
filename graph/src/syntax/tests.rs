//! Tests of the Dockerfile parser: every instruction, directives, continuations, errors.

use super::*;
use crate::state::Healthcheck;

fn one(src: &str) -> InstructionKind {
    let df = parse(&format!("FROM scratch\n{src}"), "Dockerfile")
        .unwrap_or_else(|e| panic!("{src}: {e}"));
    df.instructions[1].kind.clone()
}

fn err(src: &str) -> Error {
    parse(src, "Dockerfile").expect_err(src)
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: s(k),
        value: s(v),
    }
}

#[test]
fn parses_every_instruction() {
    let cases: Vec<(&str, InstructionKind)> = vec![
        (
            "from --platform=$BUILDPLATFORM golang:1.22 AS Build",
            InstructionKind::From(FromInstruction {
                image: s("golang:1.22"),
                name: Some(s("build")),
                platform: Some(s("$BUILDPLATFORM")),
            }),
        ),
        (
            "RUN echo hi",
            InstructionKind::Run(RunInstruction::plain(CommandLine::Shell(s("echo hi")))),
        ),
        (
            "RUN [\"echo\", \"hi\"]",
            InstructionKind::Run(RunInstruction::plain(CommandLine::Exec(vec![
                s("echo"),
                s("hi"),
            ]))),
        ),
        (
            "CMD [\"sh\"]",
            InstructionKind::Cmd(CommandLine::Exec(vec![s("sh")])),
        ),
        ("CMD []", InstructionKind::Cmd(CommandLine::Exec(vec![]))),
        (
            "ENTRYPOINT run.sh --x",
            InstructionKind::Entrypoint(CommandLine::Shell(s("run.sh --x"))),
        ),
        (
            "SHELL [\"/bin/bash\", \"-c\"]",
            InstructionKind::Shell(vec![s("/bin/bash"), s("-c")]),
        ),
        (
            "COPY --from=build --chown=app:app --chmod=644 a b /dst/",
            InstructionKind::Copy(CopyInstruction {
                from: Some(s("build")),
                chown: Some(s("app:app")),
                chmod: Some(s("644")),
                sources: vec![s("a"), s("b")],
                dest: s("/dst/"),
                ..Default::default()
            }),
        ),
        (
            "COPY [\"a b\", \"/d\"]",
            InstructionKind::Copy(CopyInstruction {
                from: None,
                chown: None,
                chmod: None,
                sources: vec![s("a b")],
                dest: s("/d"),
                ..Default::default()
            }),
        ),
        (
            "ADD --chown=1 x.txt /x",
            InstructionKind::Add(AddInstruction {
                chown: Some(s("1")),
                chmod: None,
                sources: vec![s("x.txt")],
                dest: s("/x"),
                ..Default::default()
            }),
        ),
        (
            "ENV A=1 B=\"two words\"",
            InstructionKind::Env(vec![kv("A", "1"), kv("B", "\"two words\"")]),
        ),
        (
            "ENV A two words",
            InstructionKind::Env(vec![kv("A", "two words")]),
        ),
        (
            "LABEL a.b=c \"d\"=e",
            InstructionKind::Label(vec![kv("a.b", "c"), kv("\"d\"", "e")]),
        ),
        (
            "ARG A B=2",
            InstructionKind::Arg(vec![
                ArgDecl {
                    name: s("A"),
                    default: None,
                },
                ArgDecl {
                    name: s("B"),
                    default: Some(s("2")),
                },
            ]),
        ),
        (
            "EXPOSE 80 53/udp",
            InstructionKind::Expose(vec![s("80"), s("53/udp")]),
        ),
        (
            "VOLUME /a /b",
            InstructionKind::Volume(vec![s("/a"), s("/b")]),
        ),
        ("VOLUME [\"/a\"]", InstructionKind::Volume(vec![s("/a")])),
        ("USER app:app", InstructionKind::User(s("app:app"))),
        ("WORKDIR /my dir", InstructionKind::Workdir(s("/my dir"))),
        (
            "STOPSIGNAL SIGTERM",
            InstructionKind::StopSignal(s("SIGTERM")),
        ),
        (
            "MAINTAINER Jane <j@x>",
            InstructionKind::Maintainer(s("Jane <j@x>")),
        ),
        (
            "HEALTHCHECK --interval=30s --retries=3 CMD curl -f http://x/",
            InstructionKind::Healthcheck(Healthcheck {
                test: vec![s("CMD-SHELL"), s("curl -f http://x/")],
                interval: Some(30_000_000_000),
                retries: Some(3),
                ..Default::default()
            }),
        ),
        (
            "HEALTHCHECK CMD [\"/ok\"]",
            InstructionKind::Healthcheck(Healthcheck {
                test: vec![s("CMD"), s("/ok")],
                ..Default::default()
            }),
        ),
        (
            "HEALTHCHECK NONE",
            InstructionKind::Healthcheck(Healthcheck {
                test: vec![s("NONE")],
                ..Default::default()
            }),
        ),
        (
            "ONBUILD RUN make",
            InstructionKind::Onbuild {
                expression: s("RUN make"),
                trigger: Box::new(InstructionKind::Run(RunInstruction::plain(
                    CommandLine::Shell(s("make")),
                ))),
            },
        ),
    ];
    for (src, want) in cases {
        assert_eq!(one(src), want, "{src}");
    }
}

#[test]
fn malformed_json_falls_back_to_shell_form() {
    assert_eq!(
        one("CMD [\"a\", b]"),
        InstructionKind::Cmd(CommandLine::Shell(s("[\"a\", b]")))
    );
    assert_eq!(
        one("RUN [ -f x ] && echo y"),
        InstructionKind::Run(RunInstruction::plain(CommandLine::Shell(s(
            "[ -f x ] && echo y"
        ))))
    );
}

#[test]
fn keywords_are_case_insensitive_and_positions_recorded() {
    let df = parse(
        "# syntax=docker/dockerfile:1\n\nfrom alpine\n  run \\\n   echo hi",
        "df",
    )
    .expect("parses");
    assert_eq!(df.instructions.len(), 2);
    let run = &df.instructions[1];
    assert_eq!((run.line, run.column), (4, 3));
    assert_eq!(run.text, "run    echo hi");
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
}

#[test]
fn escape_directive_changes_continuation() {
    let df = parse(
        "# escape=`\nFROM mcr/windows\nRUN dir c:\\ `\n  /b\nCOPY a`  b c:\\x\\",
        "df",
    )
    .expect("parses");
    assert_eq!(df.escape, '`');
    assert_eq!(
        df.instructions[1].kind,
        InstructionKind::Run(RunInstruction::plain(CommandLine::Shell(s(
            "dir c:\\   /b"
        ))))
    );
    assert_eq!(df.instructions.len(), 3);
}

#[test]
fn heredocs_attach_to_run_and_copy() {
    let df = parse(
        "FROM a\nRUN <<-EOF\n\techo hi\n\tEOF\nCOPY --chmod=u+x <<one <<'two' /d/\n$A\none\n$B\ntwo\nRUN python3 <<EOF\nprint(1)\nEOF\n",
        "Dockerfile",
    )
    .expect("parses");
    let InstructionKind::Run(run) = &df.instructions[1].kind else {
        panic!("not a RUN")
    };
    assert_eq!(run.command, CommandLine::Shell(s("<<-EOF")));
    assert_eq!(run.heredocs.len(), 1);
    assert_eq!(run.heredocs[0].data(), "echo hi\n");
    let InstructionKind::Copy(copy) = &df.instructions[2].kind else {
        panic!("not a COPY")
    };
    assert_eq!(df.instructions[2].line, 5);
    assert!(copy.sources.is_empty());
    let names: Vec<(&str, bool, &str)> = copy
        .heredocs
        .iter()
        .map(|h| (h.name.as_str(), h.expand, h.content.as_str()))
        .collect();
    assert_eq!(names, [("one", true, "$A\n"), ("two", false, "$B\n")]);
    assert_eq!(copy.chmod.as_deref(), Some("u+x"));
    assert_eq!(df.instructions[3].line, 10);
}

#[test]
fn run_flags_are_typed() {
    let InstructionKind::Run(run) = one(
        "RUN --mount=type=secret,id=tok --mount=type=tmpfs,target=/t --network=none --security=sandbox make",
    ) else {
        panic!("not a RUN")
    };
    assert_eq!(run.mounts.len(), 2);
    assert_eq!(run.mounts[0].kind(), "secret");
    assert_eq!(run.network, Some(crate::NetworkMode::None));
    assert_eq!(run.security, Some(crate::SecurityMode::Sandbox));
}

#[test]
fn copy_and_add_flags_are_kept() {
    assert_eq!(
        one("COPY --link --parents --exclude=*.md --exclude=tmp ./a/./b /d/"),
        InstructionKind::Copy(CopyInstruction {
            link: true,
            parents: true,
            excludes: vec![s("*.md"), s("tmp")],
            sources: vec![s("./a/./b")],
            dest: s("/d/"),
            ..Default::default()
        })
    );
    let sum = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(
        one(&format!(
            "ADD --link=false --checksum={sum} --keep-git-dir https://x/y /y"
        )),
        InstructionKind::Add(AddInstruction {
            checksum: Some(sum.clone()),
            keep_git_dir: Some(true),
            sources: vec![s("https://x/y")],
            dest: s("/y"),
            ..Default::default()
        })
    );
}

#[test]
fn errors_have_line_column_and_message() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("FROM a\n  FOO bar", 2, 3, "unknown instruction: FOO"),
        (
            "FROM a\nRUN --mount=type=cache make",
            2,
            1,
            "a cache mount needs target=<path>",
        ),
        (
            "FROM a\n  RUN --mount=type=nfs,target=/x make",
            2,
            3,
            "unsupported mount type \"nfs\"",
        ),
        (
            "FROM a\nRUN --network=bridge make",
            2,
            1,
            "unsupported network mode \"bridge\"",
        ),
        (
            "FROM a\nRUN --security=weird make",
            2,
            1,
            "unsupported security mode \"weird\"",
        ),
        (
            "FROM a\nRUN <<EOF\necho hi\n",
            2,
            1,
            "unterminated heredoc: no line \"EOF\"",
        ),
        (
            "FROM a\nCOPY <<EOF <<X\nhi\nEOF\n",
            2,
            1,
            "unterminated heredoc: no line \"X\"",
        ),
        (
            "FROM a\nCOPY x <<EOF\nhi\nEOF",
            2,
            1,
            "COPY cannot accept a heredoc as a destination",
        ),
        (
            "FROM a\nONBUILD RUN <<EOF\nhi\nEOF",
            2,
            1,
            "heredocs in ONBUILD triggers are not supported",
        ),
        (
            "FROM a\nONBUILD -- ADD <<EOF /d\nhi\nEOF",
            2,
            1,
            "heredocs in ONBUILD triggers are not supported",
        ),
        (
            "FROM a\nCOPY --bogus=1 a b",
            2,
            1,
            "unknown flag --bogus for COPY",
        ),
        (
            "FROM a\nCOPY --link=maybe a b",
            2,
            1,
            "expecting boolean value for flag --link of COPY",
        ),
        (
            "FROM a\nCOPY --exclude a b",
            2,
            1,
            "missing a value on flag --exclude for COPY",
        ),
        (
            "FROM a\nCOPY --chmod=u+z a b",
            2,
            1,
            "invalid chmod parameter: 'u+z'",
        ),
        (
            "FROM a\nADD --checksum=sha256:x http://x /y",
            2,
            1,
            "a sha256 digest is 64 lower-case hex digits",
        ),
        (
            "FROM a\nADD --keep-git-dir=nope a b",
            2,
            1,
            "expecting boolean value for flag --keep-git-dir of ADD",
        ),
        ("FROM a\nENV --x=1 A=b", 2, 1, "unknown flag --x for ENV"),
        (
            "FROM a\nCOPY onlyone",
            2,
            1,
            "COPY requires at least two arguments",
        ),
        (
            "FROM a b",
            1,
            1,
            "FROM requires either one or three arguments",
        ),
        ("FROM a AS 1bad", 1, 1, "invalid stage name"),
        ("FROM a\nENV A=1 B", 2, 1, "can't find = in \"B\""),
        ("FROM a\nENV A", 2, 1, "ENV must have two arguments"),
        (
            "FROM a\nSHELL /bin/sh -c",
            2,
            1,
            "SHELL requires the arguments to be in JSON form",
        ),
        (
            "FROM a\nHEALTHCHECK --interval=1us CMD x",
            2,
            1,
            "cannot be less than 1ms",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=-1 CMD x",
            2,
            1,
            "--retries cannot be negative",
        ),
        (
            "FROM a\nHEALTHCHECK WHAT",
            2,
            1,
            "unknown type \"WHAT\" in HEALTHCHECK",
        ),
        (
            "FROM a\nHEALTHCHECK NONE x",
            2,
            1,
            "HEALTHCHECK NONE takes no arguments",
        ),
        ("FROM a\nONBUILD ONBUILD RUN x", 2, 1, "ONBUILD ONBUILD"),
        (
            "FROM a\nONBUILD FROM b",
            2,
            1,
            "FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM a\nONBUILD FOO",
            2,
            1,
            "ONBUILD trigger: unknown instruction: FOO",
        ),
        (
            "FROM a\nSTOPSIGNAL A B",
            2,
            1,
            "STOPSIGNAL requires exactly one argument",
        ),
        (
            "FROM a\nCOPY --from=$X a b",
            2,
            1,
            "variables are not expanded in --from",
        ),
        ("FROM a\nRUN", 2, 1, "RUN requires at least one argument"),
        (
            "FROM a\nEXPOSE",
            2,
            1,
            "EXPOSE requires at least one argument",
        ),
    ];
    for (src, line, column, msg) in cases {
        let e = err(src);
        assert_eq!((e.line(), e.column()), (*line, *column), "{src}: {e}");
        assert!(
            e.message.contains(msg),
            "{src}: got {:?}, want {msg:?}",
            e.message
        );
    }
}

#[test]
fn error_display_quotes_the_instruction() {
    let e = err("FROM a\n\nFOO bar");
    assert_eq!(
        e.to_string(),
        "Dockerfile:3:1: unknown instruction: FOO\n    3 | FOO bar"
    );
}

#[test]
fn empty_dockerfile_is_an_error() {
    for src in ["", "# just a comment\n\n", "\u{feff}"] {
        assert!(err(src).message.contains("empty"), "{src:?}");
    }
}

#[test]
fn exec_form_run_with_heredoc_text_is_not_a_heredoc() {
    assert_eq!(
        one("RUN [\"sh\", \"-c\", \"cat <<EOF\"]"),
        InstructionKind::Run(RunInstruction::plain(CommandLine::Exec(vec![
            s("sh"),
            s("-c"),
            s("cat <<EOF")
        ])))
    );
}
