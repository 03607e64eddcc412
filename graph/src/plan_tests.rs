//! Planner behaviour: ARG scoping, config evolution, history strings, stages, DAG and keys.

use std::collections::BTreeMap;

use crate::{
    BaseRef, Chmod, CopyFrom, CopyStep, DEFAULT_PATH, Error, ImageState, KeyInputs, Plan,
    PlanOptions, Planner, Platform, StepId, StepKind, parse,
};

fn amd64() -> Platform {
    Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    }
}

fn options(build_args: &[(&str, &str)], target: Option<&str>) -> PlanOptions {
    PlanOptions {
        build_args: build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: target.map(str::to_owned),
        platform: amd64(),
        build_platform: amd64(),
    }
}

/// Every external image gets `base` as its config.
fn plan_with(src: &str, opts: PlanOptions, base: &ImageState) -> Result<Plan, Error> {
    let df = parse(src, "Dockerfile")?;
    let planner = Planner::new(&df, opts)?;
    let bases: BTreeMap<String, ImageState> = planner
        .external_images()
        .into_iter()
        .map(|r| (r, base.clone()))
        .collect();
    planner.plan(&bases)
}

fn plan(src: &str) -> Plan {
    plan_with(src, options(&[], None), &ImageState::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn plan_err(src: &str, opts: PlanOptions) -> Error {
    plan_with(src, opts, &ImageState::default()).expect_err(src)
}

fn target_steps(p: &Plan) -> &[crate::Step] {
    &p.stages[p.target].steps
}

fn run_env(p: &Plan, step: usize) -> Vec<(String, String)> {
    match &target_steps(p)[step].kind {
        StepKind::Run(r) => r.env.clone(),
        other => panic!("step {step} is not RUN: {other:?}"),
    }
}

fn env_of(env: &[(String, String)], key: &str) -> Option<String> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

#[test]
fn created_by_matches_buildkit_for_every_instruction() {
    let p = plan(concat!(
        "FROM scratch\n",
        "ARG A=b\n",
        "RUN echo $A\n",
        "ENV X=1 Y=\"two words\"\n",
        "LABEL a=b\n",
        "COPY --chown=u --chmod=640 a.txt /app/\n",
        "ADD x.txt y\n",
        "WORKDIR /app\n",
        "USER u\n",
        "CMD [\"sh\"]\n",
        "ENTRYPOINT run --fast\n",
        "EXPOSE 80 53/udp\n",
        "VOLUME /data\n",
        "SHELL [\"/bin/bash\", \"-c\"]\n",
        "STOPSIGNAL SIGINT\n",
        "HEALTHCHECK --interval=30s --retries=3 CMD curl -f x\n",
        "MAINTAINER me\n",
        "ONBUILD RUN make\n",
        "RUN [\"ls\", \"-l\"]\n",
    ));
    let got: Vec<&str> = target_steps(&p)
        .iter()
        .map(|s| s.created_by.as_str())
        .collect();
    assert_eq!(
        got,
        vec![
            "ARG A=b",
            "RUN |1 A=b /bin/sh -c echo $A # buildkit",
            "ENV X=1 Y=two words",
            "LABEL a=b",
            "COPY --chown=u --chmod=640 a.txt /app/ # buildkit",
            "ADD x.txt y # buildkit",
            "WORKDIR /app",
            "USER u",
            "CMD [\"sh\"]",
            "ENTRYPOINT [\"/bin/sh\" \"-c\" \"run --fast\"]",
            "EXPOSE map[53/udp:{} 80/tcp:{}]",
            "VOLUME [/data]",
            "SHELL [/bin/bash -c]",
            "STOPSIGNAL SIGINT",
            "HEALTHCHECK &{[\"CMD-SHELL\" \"curl -f x\"] \"30s\" \"0s\" \"0s\" \"0s\" '\\x03'}",
            "MAINTAINER me",
            "ONBUILD RUN make",
            "RUN |1 A=b ls -l # buildkit",
        ]
    );
    let in_history: Vec<bool> = target_steps(&p).iter().map(|s| s.in_history).collect();
    assert_eq!(
        in_history.iter().filter(|h| !**h).count(),
        1,
        "only ONBUILD has no history entry"
    );
    let last = p.stages[0].final_state();
    assert_eq!(last.author.as_deref(), Some("me"));
    assert_eq!(last.onbuild, vec!["RUN make".to_owned()]);
    assert_eq!(last.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(
        last.shell,
        Some(vec!["/bin/bash".to_owned(), "-c".to_owned()])
    );
}

#[test]
fn global_args_reach_from_lines_but_not_stages_unless_redeclared() {
    let src = "ARG TAG=3.19\nARG OTHER=o\nFROM alpine:$TAG\nRUN echo\nARG TAG\nRUN echo $TAG";
    let df = parse(src, "Dockerfile").expect("parses");
    let planner = Planner::new(&df, options(&[], None)).expect("plans");
    assert_eq!(planner.external_images(), vec!["alpine:3.19".to_owned()]);
    let p = plan(src);
    assert_eq!(
        env_of(&run_env(&p, 0), "TAG"),
        None,
        "global ARG is not in scope before redeclaration"
    );
    assert_eq!(env_of(&run_env(&p, 0), "OTHER"), None);
    assert_eq!(env_of(&run_env(&p, 2), "TAG").as_deref(), Some("3.19"));
    assert_eq!(target_steps(&p)[1].created_by, "ARG TAG=3.19");
}

#[test]
fn build_args_override_defaults_and_undeclared_ones_are_invisible() {
    let src = "ARG V=1\nFROM img:$V\nARG V\nARG W=w\nRUN env";
    let p = plan_with(
        src,
        options(&[("V", "2"), ("W", "x"), ("SECRET", "s")], None),
        &ImageState::default(),
    )
    .expect("plans");
    assert_eq!(p.stages[0].base, BaseRef::Image("img:2".into()));
    let env = run_env(&p, 2);
    assert_eq!(env_of(&env, "V").as_deref(), Some("2"));
    assert_eq!(env_of(&env, "W").as_deref(), Some("x"));
    assert_eq!(env_of(&env, "SECRET"), None);
    assert_eq!(
        target_steps(&p)[2].created_by,
        "RUN |2 V=2 W=x /bin/sh -c env # buildkit"
    );
}

#[test]
fn platform_args_are_global_and_need_declaring_in_a_stage() {
    let platform = Platform {
        os: "linux".into(),
        architecture: "arm64".into(),
        variant: Some("v8".into()),
    };
    let opts = PlanOptions {
        build_args: vec![],
        target: None,
        platform,
        build_platform: amd64(),
    };
    let src = "FROM base-$TARGETARCH\nRUN a\nARG TARGETARCH TARGETPLATFORM TARGETVARIANT BUILDARCH\nRUN b";
    let p = plan_with(src, opts, &ImageState::default()).expect("plans");
    assert_eq!(p.stages[0].base, BaseRef::Image("base-arm64".into()));
    assert_eq!(env_of(&run_env(&p, 0), "TARGETARCH"), None);
    let env = run_env(&p, 2);
    assert_eq!(env_of(&env, "TARGETARCH").as_deref(), Some("arm64"));
    assert_eq!(
        env_of(&env, "TARGETPLATFORM").as_deref(),
        Some("linux/arm64/v8")
    );
    assert_eq!(env_of(&env, "TARGETVARIANT").as_deref(), Some("v8"));
    assert_eq!(env_of(&env, "BUILDARCH").as_deref(), Some("amd64"));
    let p = plan("FROM scratch AS first\nFROM scratch AS Last\nARG TARGETSTAGE\nRUN x");
    assert_eq!(
        env_of(&run_env(&p, 1), "TARGETSTAGE").as_deref(),
        Some("last")
    );
}

#[test]
fn proxy_args_reach_run_without_arg_but_not_history_or_config() {
    let p = plan_with(
        "FROM scratch\nRUN a\nARG no_proxy\nRUN b",
        options(
            &[
                ("HTTP_PROXY", "http://p:3128"),
                ("no_proxy", "x"),
                ("OTHER", "1"),
            ],
            None,
        ),
        &ImageState::default(),
    )
    .expect("plans");
    let steps = target_steps(&p);
    let StepKind::Run(first) = &steps[0].kind else {
        panic!("not a RUN")
    };
    assert_eq!(
        first.proxy_env,
        [
            ("HTTP_PROXY".to_owned(), "http://p:3128".to_owned()),
            ("no_proxy".to_owned(), "x".to_owned())
        ]
    );
    assert!(
        !steps[0].created_by.contains("proxy"),
        "{}",
        steps[0].created_by
    );
    assert!(
        !steps[0].created_by.contains("PROXY"),
        "{}",
        steps[0].created_by
    );
    assert!(steps.iter().all(|s| {
        s.state
            .env
            .iter()
            .all(|(k, _)| !k.contains("roxy") && !k.contains("ROXY"))
    }));
    // Declared with ARG, it is an ordinary ARG: in the env and recorded in the history.
    assert_eq!(
        steps[2].created_by,
        "RUN |1 no_proxy=x /bin/sh -c b # buildkit"
    );
    let StepKind::Run(second) = &steps[2].kind else {
        panic!("not a RUN")
    };
    assert_eq!(
        second.proxy_env,
        [("HTTP_PROXY".to_owned(), "http://p:3128".to_owned())]
    );
}

#[test]
fn heredoc_runs_and_copies_follow_buildkit() {
    let p = plan_with(
        "FROM scratch\nARG A=1\nRUN <<EOF\necho $A\nEOF\nRUN <<EOF\n#!/bin/sh\necho hi\nEOF\nRUN cat <<-X > f\n\tone\n\tX\nCOPY --chmod=u+x <<one <<'two' /d/\n$A \"$A\"\none\n$A\ntwo\n",
        options(&[], None),
        &ImageState::default(),
    )
    .expect("plans");
    let steps = target_steps(&p);
    let argv = |i: usize| match &steps[i].kind {
        StepKind::Run(r) => (r.argv.clone(), r.script.clone()),
        _ => panic!("not a RUN"),
    };
    assert_eq!(argv(1).0, ["/bin/sh", "-c", "echo $A\n"]);
    let (script_argv, script) = argv(2);
    assert_eq!(script_argv, ["/bin/sh", "-c", "/dev/pipes/EOF"]);
    assert_eq!(
        script.map(|s| s.data).as_deref(),
        Some("#!/bin/sh\necho hi\n")
    );
    assert_eq!(argv(3).0, ["/bin/sh", "-c", "cat <<-X > f\n\tone\nX"]);
    let StepKind::Copy(copy) = &steps[4].kind else {
        panic!("not a COPY")
    };
    let files: Vec<(&str, &str)> = copy
        .contents
        .iter()
        .map(|f| (f.name.as_str(), f.data.as_str()))
        .collect();
    assert_eq!(files, [("one", "1 \"1\"\n"), ("two", "$A\n")]);
    assert_eq!(
        steps[4].created_by,
        "COPY --chmod=u+x <<one <<two /d/ # buildkit"
    );
}

#[test]
fn a_failing_expansion_in_a_heredoc_names_the_heredoc_and_its_line() {
    let e = plan_err(
        "FROM scratch\n\n ADD <<conf /etc/app.conf\nkey=${KEY:?must be set}\nconf\n",
        options(&[], None),
    );
    assert_eq!((e.line(), e.column()), (3, 2));
    assert!(e.message.contains("KEY: must be set"), "{e}");
    assert!(e.message.contains("in heredoc \"conf\""), "{e}");
}

#[test]
fn add_checksum_on_a_local_source_is_refused_at_its_line() {
    let sum = format!("sha256:{}", "0".repeat(64));
    let e = plan_err(
        &format!("FROM scratch\n\n  ADD --checksum={sum} local.tgz /x"),
        options(&[], None),
    );
    assert_eq!((e.line(), e.column()), (3, 3));
    assert!(
        e.message
            .contains("checksum can't be specified for non-HTTP(S) sources"),
        "{e}"
    );
}

#[test]
fn add_of_urls_is_planned_and_mixing_them_with_local_files_is_refused_at_its_line() {
    let sum = format!("sha256:{}", "a".repeat(64));
    let p = plan(&format!(
        "FROM scratch\nADD --checksum={sum} https://example.com/a/tool.tgz /opt/\n"
    ));
    let StepKind::Copy(copy) = &p.stages[0].steps[0].kind else {
        panic!("not a copy");
    };
    assert!(copy.downloads());
    assert_eq!(copy.checksum.as_deref(), Some(sum.as_str()));
    let e = plan_err(
        "FROM scratch\nADD https://example.com/a local /x/\n",
        options(&[], None),
    );
    assert_eq!((e.line(), e.column()), (2, 1));
    assert!(e.message.contains("mixes URLs with local sources"), "{e}");
    let e = plan_err(
        &format!("FROM scratch\nADD --checksum={sum} https://e.com/a https://e.com/b /x/\n"),
        options(&[], None),
    );
    assert!(e.message.contains("multiple sources"), "{e}");
    // A git URL is planned as a clone, not a download.
    let p = plan("FROM scratch\nADD https://example.com/repo.git#main /src\n");
    let StepKind::Copy(copy) = &p.stages[0].steps[0].kind else {
        panic!("not a copy");
    };
    assert!(copy.clones() && !copy.downloads());
}

#[test]
fn env_wins_over_arg_and_arg_without_value_is_recorded_empty() {
    let p = plan("FROM scratch\nENV X=env\nARG X=arg\nARG EMPTY\nRUN echo $X");
    let env = run_env(&p, 3);
    assert_eq!(env_of(&env, "X").as_deref(), Some("env"));
    assert_eq!(env_of(&env, "EMPTY"), None);
    assert_eq!(
        target_steps(&p)[3].created_by,
        "RUN |2 X=env EMPTY= /bin/sh -c echo $X # buildkit"
    );
}

#[test]
fn expansion_applies_to_builder_instructions_only() {
    let p = plan(concat!(
        "FROM scratch\n",
        "ENV D=/srv U=app P=8080 A=1\n",
        "ENV A=2 B=$A\n",
        "WORKDIR $D\n",
        "USER ${U}:${G:-grp}\n",
        "EXPOSE $P\n",
        "LABEL k=$D\n",
        "COPY ${D}/x ./\n",
        "RUN echo $D\n",
        "CMD echo $D\n",
    ));
    let s = target_steps(&p);
    let st = p.stages[0].final_state();
    assert_eq!(
        env_of(&st.env, "B").as_deref(),
        Some("1"),
        "pairs in one ENV see the previous scope"
    );
    assert_eq!(st.working_dir.as_deref(), Some("/srv"));
    assert_eq!(st.user.as_deref(), Some("app:grp"));
    assert!(st.exposed_ports.contains("8080/tcp"));
    assert_eq!(st.labels.get("k").map(String::as_str), Some("/srv"));
    match &s[6].kind {
        StepKind::Copy(c) => assert_eq!(
            (c.sources.clone(), c.dest.as_str()),
            (vec!["/srv/x".to_owned()], "/srv/")
        ),
        other => panic!("{other:?}"),
    }
    match &s[7].kind {
        StepKind::Run(r) => assert_eq!(r.argv, vec!["/bin/sh", "-c", "echo $D"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        st.cmd,
        Some(vec!["/bin/sh".into(), "-c".into(), "echo $D".into()])
    );
}

#[test]
fn run_steps_carry_user_workdir_shell_and_default_path() {
    let p = plan(
        "FROM scratch\nSHELL [\"/bin/bash\", \"-eo\", \"pipefail\", \"-c\"]\nUSER 1000\nWORKDIR w\nRUN make",
    );
    match &target_steps(&p)[3].kind {
        StepKind::Run(r) => {
            assert_eq!(r.argv, vec!["/bin/bash", "-eo", "pipefail", "-c", "make"]);
            assert_eq!(r.user.as_deref(), Some("1000"));
            assert_eq!(r.workdir, "/w");
            assert_eq!(env_of(&r.env, "PATH").as_deref(), Some(DEFAULT_PATH));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn base_path_is_kept_and_missing_path_is_added() {
    let base = ImageState {
        env: vec![("PATH".into(), "/opt/bin".into())],
        ..Default::default()
    };
    let p = plan_with("FROM img\nRUN x", options(&[], None), &base).expect("plans");
    assert_eq!(
        p.stages[0].base_state.env,
        vec![("PATH".to_owned(), "/opt/bin".to_owned())]
    );
    let p = plan("FROM scratch\nRUN x");
    assert_eq!(p.stages[0].base_state.env_var("PATH"), Some(DEFAULT_PATH));
}

#[test]
fn entrypoint_clears_inherited_cmd_but_not_one_set_in_the_stage() {
    let base = ImageState {
        cmd: Some(vec!["base".into()]),
        ..Default::default()
    };
    let cases: &[(&str, Option<&[&str]>)] = &[
        ("FROM img\nENTRYPOINT [\"e\"]", None),
        ("FROM img\nCMD [\"c\"]\nENTRYPOINT [\"e\"]", Some(&["c"])),
        ("FROM img\nENTRYPOINT [\"e\"]\nCMD [\"c\"]", Some(&["c"])),
        ("FROM img\nLABEL a=b", Some(&["base"])),
        ("FROM img\nCMD [\"c\"]\nFROM 0\nENTRYPOINT [\"e\"]", None),
    ];
    for (src, want) in cases {
        let p = plan_with(src, options(&[], None), &base).expect("plans");
        let got = p.stages[p.target].final_state().cmd.clone();
        let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(got, want, "{src}");
    }
}

#[test]
fn workdir_chains_and_creates_directories_as_the_user() {
    let p = plan("FROM scratch\nWORKDIR /a\nWORKDIR b\nUSER u\nWORKDIR ../c\nWORKDIR /");
    let s = target_steps(&p);
    let kinds: Vec<&StepKind> = s.iter().map(|s| &s.kind).collect();
    assert_eq!(
        kinds[0],
        &StepKind::Workdir {
            path: "/a".into(),
            user: None
        }
    );
    assert_eq!(
        kinds[1],
        &StepKind::Workdir {
            path: "/a/b".into(),
            user: None
        }
    );
    assert_eq!(
        kinds[3],
        &StepKind::Workdir {
            path: "/a/c".into(),
            user: Some("u".into())
        }
    );
    assert_eq!(kinds[4], &StepKind::Config, "WORKDIR / makes no layer");
    assert_eq!(s[2].created_by, "USER u");
    assert_eq!(s[3].created_by, "WORKDIR /a/c");
}

#[test]
fn expose_accumulates_ports_ranges_and_protocols() {
    let p = plan("FROM scratch\nEXPOSE 80\nEXPOSE 8000-8001 53/udp");
    let ports: Vec<&str> = p.stages[0]
        .final_state()
        .exposed_ports
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(ports, vec!["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
    assert_eq!(
        target_steps(&p)[1].created_by,
        "EXPOSE map[53/udp:{} 8000/tcp:{} 8001/tcp:{}]"
    );
}

#[test]
fn copy_destinations_chmod_and_add_rules() {
    let p = plan("FROM scratch\nWORKDIR /app\nCOPY --chmod=0755 a .\nCOPY b sub/\nCOPY c /abs");
    let dests: Vec<(String, Option<Chmod>)> = target_steps(&p)
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Copy(c) => Some((c.dest.clone(), c.chmod.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        dests,
        vec![
            ("/app/".into(), Some(Chmod::Octal(0o755))),
            ("/app/sub/".into(), None),
            ("/abs".into(), None)
        ]
    );
    let e = plan_err(
        "FROM scratch\nARG M=u+q\nCOPY --chmod=$M a b",
        options(&[], None),
    );
    assert_eq!((e.line(), e.column()), (3, 1));
    assert!(e.message.contains("invalid chmod parameter: 'u+q'"), "{e}");
    let e = plan_err(
        "FROM scratch\n\nADD git@x:y/z.git a /y/",
        options(&[], None),
    );
    assert_eq!(e.line(), 3);
    assert!(e.message.contains("only source"), "{e}");
}

#[test]
fn stages_resolve_by_name_index_and_image() {
    let src = concat!(
        "FROM golang AS Build\n",
        "RUN go build\n",
        "FROM alpine AS unused\n",
        "RUN nope\n",
        "FROM build AS test\n",
        "RUN go test\n",
        "FROM scratch\n",
        "COPY --from=BUILD /out /a\n",
        "COPY --from=2 /x /b\n",
        "COPY --from=busybox:1 /bin/sh /c\n",
    );
    let df = parse(src, "Dockerfile").expect("parses");
    let planner = Planner::new(&df, options(&[], None)).expect("plans");
    assert_eq!(
        planner.external_images(),
        vec!["golang".to_owned(), "busybox:1".to_owned()],
        "unused stages need no image"
    );
    let p = plan(src);
    let names: Vec<Option<&str>> = p.stages.iter().map(|s| s.name.as_deref()).collect();
    assert_eq!(names, vec![Some("build"), Some("test"), None]);
    assert_eq!(p.stages[1].base, BaseRef::Stage(0));
    assert_eq!(p.stages[1].dockerfile_index, 2);
    let froms: Vec<CopyFrom> = target_steps(&p)
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Copy(c) => Some(c.from.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        froms,
        vec![
            CopyFrom::Stage(0),
            CopyFrom::Stage(1),
            CopyFrom::Image("busybox:1".into())
        ]
    );

    let p = plan_with(src, options(&[], Some("TEST")), &ImageState::default()).expect("plans");
    assert_eq!(
        p.stages.len(),
        2,
        "only the target and what it needs are planned"
    );
    assert_eq!(p.stages[p.target].name.as_deref(), Some("test"));
    assert_eq!(p.build_order(), vec![0, 1]);
}

#[test]
fn build_order_and_graph_follow_stage_dependencies() {
    let p = plan(concat!(
        "FROM scratch AS a\nRUN a1\nRUN a2\n",
        "FROM a AS b\nRUN b1\n",
        "FROM scratch AS c\nRUN c1\n",
        "FROM c\nCOPY --from=b /x /x\nRUN d1\n",
    ));
    assert_eq!(p.build_order(), vec![0, 1, 2, 3]);
    assert_eq!(p.stage_dependencies(3), vec![1, 2]);
    let g = p.graph();
    assert_eq!(g.node_count(), 6);
    let edge = |from: StepId, to: StepId| {
        let (f, t) = (p.node(from).expect("node"), p.node(to).expect("node"));
        g.find_edge(f, t).is_some()
    };
    let id = |stage, step| StepId { stage, step };
    assert!(edge(id(0, 0), id(0, 1)), "previous step in stage");
    assert!(edge(id(0, 1), id(1, 0)), "FROM <stage>");
    assert!(edge(id(2, 0), id(3, 0)), "FROM <stage> for the final stage");
    assert!(edge(id(1, 0), id(3, 0)), "COPY --from=<stage>");
    assert!(edge(id(3, 0), id(3, 1)));
    assert_eq!(g.edge_count(), 5);
}

#[test]
fn stage_errors_name_the_line() {
    let cases: &[(&str, Option<&str>, usize, &str)] = &[
        (
            "RUN x\nFROM a",
            None,
            1,
            "RUN cannot come before the first FROM",
        ),
        ("ARG A\n", None, 0, "no FROM instruction"),
        (
            "FROM a\nCOPY --from=b /x /y\nFROM a AS b",
            None,
            2,
            "defined after this one",
        ),
        (
            "FROM a AS b\nCOPY --from=b /x /y",
            None,
            2,
            "cannot copy from itself",
        ),
        (
            "FROM a\nCOPY --from=5 /x /y",
            None,
            2,
            "invalid stage index",
        ),
        ("FROM a AS x\nFROM b AS X", None, 2, "duplicate stage name"),
        (
            "FROM a",
            Some("nope"),
            0,
            "target stage \"nope\" could not be found",
        ),
        (
            "FROM --platform=linux/arm64 a",
            None,
            1,
            "differs from the target platform linux/amd64",
        ),
        ("FROM $EMPTY", None, 1, "should not be blank"),
        ("FROM a\nSTOPSIGNAL SIGNOPE", None, 2, "invalid signal"),
        ("FROM a\nWORKDIR ${X:?needs X}", None, 2, "X: needs X"),
    ];
    for (src, target, line, msg) in cases {
        let e = plan_err(src, options(&[], *target));
        assert_eq!(e.line(), *line, "{src}: {e}");
        assert!(e.message.contains(msg), "{src}: got {:?}", e.message);
    }
}

#[test]
fn from_build_platform_stages_are_pulled_for_the_build_platform() {
    let arm = Platform {
        os: "linux".into(),
        architecture: "arm64".into(),
        variant: None,
    };
    let df = parse(
        "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETARCH\nRUN go build\nFROM golang\nCOPY --from=build /out /out",
        "Dockerfile",
    )
    .unwrap();
    let planner = Planner::new(
        &df,
        PlanOptions {
            platform: arm.clone(),
            build_platform: amd64(),
            ..options(&[], None)
        },
    )
    .unwrap();
    let pulls = planner.image_pulls();
    let summary: Vec<(&str, &str, String)> = pulls
        .iter()
        .map(|p| (p.key.as_str(), p.reference.as_str(), p.platform.to_string()))
        .collect();
    assert_eq!(
        summary,
        [
            ("golang (linux/amd64)", "golang", "linux/amd64".to_owned()),
            ("golang", "golang", "linux/arm64".to_owned())
        ]
    );
    let bases = planner
        .external_images()
        .into_iter()
        .map(|i| (i, ImageState::default()))
        .collect();
    let p = planner.plan(&bases).unwrap();
    assert_eq!(p.stages[0].platform, amd64());
    assert_eq!(p.stages[1].platform, arm);
    let StepKind::Run(run) = &p.stages[0].steps[1].kind else {
        panic!("not a RUN")
    };
    assert!(
        run.env
            .contains(&("TARGETARCH".to_owned(), "arm64".to_owned()))
    );
}

#[test]
fn from_platform_matching_the_target_is_accepted() {
    for src in [
        "FROM --platform=$BUILDPLATFORM a",
        "FROM --platform=$TARGETPLATFORM a",
        "FROM --platform=linux/amd64 a",
    ] {
        assert!(
            plan_with(src, options(&[], None), &ImageState::default()).is_ok(),
            "{src}"
        );
    }
}

#[test]
fn onbuild_triggers_of_the_base_run_first_and_are_consumed() {
    let base = ImageState {
        onbuild: vec!["ENV FROM_TRIGGER=1".into(), "RUN make".into()],
        ..Default::default()
    };
    let p = plan_with("FROM img\nRUN after", options(&[], None), &base).expect("plans");
    let s = target_steps(&p);
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].created_by, "ENV FROM_TRIGGER=1");
    assert_eq!(s[0].line, 1, "triggers are attributed to the FROM line");
    assert_eq!(s[1].created_by, "RUN /bin/sh -c make # buildkit");
    assert!(p.stages[0].base_state.onbuild.is_empty());
    assert!(p.stages[0].final_state().onbuild.is_empty());

    let p = plan("FROM scratch AS parent\nONBUILD RUN from-parent\nFROM parent\nRUN child");
    let child: Vec<&str> = target_steps(&p)
        .iter()
        .map(|s| s.created_by.as_str())
        .collect();
    assert_eq!(
        child,
        vec![
            "RUN /bin/sh -c from-parent # buildkit",
            "RUN /bin/sh -c child # buildkit"
        ]
    );

    let bad = ImageState {
        onbuild: vec!["COPY --from=other:1 /a /b".into()],
        ..Default::default()
    };
    let e = plan_with("FROM img", options(&[], None), &bad).expect_err("unresolved image");
    assert!(e.message.contains("not supported yet"), "{e}");
}

#[test]
fn missing_base_config_is_an_error_at_the_from_line() {
    let df = parse("FROM scratch\nRUN x\nFROM alpine", "Dockerfile").expect("parses");
    let e = Planner::new(&df, options(&[], None))
        .and_then(|p| p.plan(&BTreeMap::new()))
        .expect_err("missing");
    assert_eq!(e.line(), 3);
    assert!(
        e.message
            .contains("no image config was provided for base image \"alpine\"")
    );
}

struct Inputs {
    image: String,
    context: [u8; 32],
}

impl KeyInputs for Inputs {
    fn image_digest(&self, reference: &str) -> Option<String> {
        Some(format!("{}@{reference}", self.image))
    }
    fn context_digest(&self, copy: &CopyStep) -> Result<[u8; 32], String> {
        let mut d = self.context;
        d[0] ^= copy.sources.len() as u8;
        Ok(d)
    }
}

fn keys(
    src: &str,
    build_args: &[(&str, &str)],
    platform: Platform,
    inputs: &Inputs,
) -> Vec<String> {
    let opts = PlanOptions {
        platform,
        ..options(build_args, None)
    };
    let mut p = plan_with(src, opts, &ImageState::default()).expect("plans");
    p.assign_keys(inputs).expect("keys");
    let mut out = Vec::new();
    for s in &p.stages {
        out.push(s.key.map(|k| k.to_string()).unwrap_or_default());
        out.extend(
            s.steps
                .iter()
                .map(|st| st.key.map(|k| k.to_string()).unwrap_or_default()),
        );
    }
    out
}

const KEYED: &str = concat!(
    "FROM base AS build\nARG V=1\nWORKDIR /src\nCOPY . .\nRUN make V=$V\n",
    "FROM scratch\nCOPY --from=build /out /out\nENV Z=1\nRUN true\n",
);

#[test]
fn keys_are_stable_for_identical_inputs() {
    let inputs = Inputs {
        image: "sha256:aa".into(),
        context: [1; 32],
    };
    let a = keys(KEYED, &[], amd64(), &inputs);
    let b = keys(KEYED, &[], amd64(), &inputs);
    assert_eq!(a, b);
    assert!(a.iter().all(|k| k.len() == 64));
    let unique: std::collections::BTreeSet<&String> = a.iter().collect();
    assert_eq!(unique.len(), a.len(), "every node has its own key");
    // An unrelated trailing change leaves earlier keys alone.
    let c = keys(&format!("{KEYED}LABEL x=y\n"), &[], amd64(), &inputs);
    assert_eq!(&c[..a.len()], &a[..]);
}

#[test]
fn keys_change_when_any_input_changes() {
    let inputs = Inputs {
        image: "sha256:aa".into(),
        context: [1; 32],
    };
    let base = keys(KEYED, &[], amd64(), &inputs);
    let arm = Platform {
        architecture: "arm64".into(),
        ..amd64()
    };
    let variants: Vec<(&str, Vec<String>)> = vec![
        ("build arg", keys(KEYED, &[("V", "2")], amd64(), &inputs)),
        ("platform", keys(KEYED, &[], arm, &inputs)),
        (
            "base digest",
            keys(
                KEYED,
                &[],
                amd64(),
                &Inputs {
                    image: "sha256:bb".into(),
                    ..inputs
                },
            ),
        ),
        (
            "context",
            keys(
                KEYED,
                &[],
                amd64(),
                &Inputs {
                    context: [2; 32],
                    image: "sha256:aa".into(),
                },
            ),
        ),
        (
            "run text",
            keys(
                &KEYED.replace("RUN true", "RUN false"),
                &[],
                amd64(),
                &Inputs {
                    image: "sha256:aa".into(),
                    context: [1; 32],
                },
            ),
        ),
        (
            "env",
            keys(
                &KEYED.replace("ENV Z=1", "ENV Z=2"),
                &[],
                amd64(),
                &Inputs {
                    image: "sha256:aa".into(),
                    context: [1; 32],
                },
            ),
        ),
    ];
    let last = base.len() - 1;
    for (what, k) in variants {
        assert_ne!(
            k[last], base[last],
            "changing the {what} must change the final key"
        );
    }
}

#[test]
fn a_changed_arg_misses_the_runs_that_see_it_but_not_a_copy_that_does_not_use_it() {
    let inputs = Inputs {
        image: "sha256:aa".into(),
        context: [1; 32],
    };
    let src = "FROM base\nARG V=1\nLABEL v=$V\nCOPY app /app\nRUN make\nCOPY app /app-$V\n";
    // Keys: stage, ARG, LABEL, COPY, RUN, COPY.
    let one = keys(src, &[], amd64(), &inputs);
    let two = keys(src, &[("V", "2")], amd64(), &inputs);
    assert_eq!(one[0], two[0], "the stage's base");
    assert_ne!(one[1], two[1], "the ARG step itself");
    assert_ne!(one[2], two[2], "the LABEL that uses it");
    assert_eq!(
        one[3], two[3],
        "a COPY whose line does not use the ARG stays cached"
    );
    assert_ne!(
        one[4], two[4],
        "a RUN sees declared ARGs in its environment"
    );
    assert_ne!(one[5], two[5], "a COPY whose line uses the ARG");
    // Metadata between filesystem steps never moves their keys; a VOLUME moves a RUN's.
    let labelled = keys(
        &src.replace("LABEL v=$V", "LABEL v=$V other=1"),
        &[],
        amd64(),
        &inputs,
    );
    assert_eq!(labelled[3..5], one[3..5]);
    let volume = keys(
        &src.replace("LABEL v=$V", "VOLUME /data"),
        &[],
        amd64(),
        &inputs,
    );
    assert_eq!(volume[3], one[3]);
    assert_ne!(
        volume[4], one[4],
        "a RUN after VOLUME loses its writes there"
    );
}

#[test]
fn missing_image_digest_is_an_error() {
    struct NoDigests;
    impl KeyInputs for NoDigests {
        fn image_digest(&self, _: &str) -> Option<String> {
            None
        }
        fn context_digest(&self, _: &CopyStep) -> Result<[u8; 32], String> {
            Err("unreadable".into())
        }
    }
    let mut p = plan("FROM scratch\nCOPY a b");
    let e = p.assign_keys(&NoDigests).expect_err("context error");
    assert_eq!(e.line(), 2);
    assert!(e.message.contains("unreadable"));
    let mut p = plan_with("FROM img", options(&[], None), &ImageState::default()).expect("plans");
    assert!(
        p.assign_keys(&NoDigests)
            .expect_err("no digest")
            .message
            .contains("no digest for base image")
    );
}

#[test]
fn run_mounts_from_a_stage_or_image_are_dependencies_and_pulls() {
    let src = concat!(
        "FROM scratch AS tools\nRUN t1\n",
        "FROM scratch AS unused\nRUN u1\n",
        "FROM scratch\n",
        "RUN --mount=type=bind,from=tools,target=/t --mount=type=cache,target=/c,from=alpine:3.19 --mount=type=tmpfs,target=/x make\n",
    );
    let df = parse(src, "Dockerfile").unwrap();
    let planner = Planner::new(&df, options(&[], None)).unwrap();
    assert_eq!(planner.external_images(), vec!["alpine:3.19".to_owned()]);
    let p = plan(src);
    assert_eq!(p.stages.len(), 2, "the unused stage is not planned");
    assert_eq!(p.build_order(), vec![0, 1]);
    assert_eq!(p.stage_dependencies(1), vec![0]);
    let StepKind::Run(run) = &p.stages[1].steps[0].kind else {
        panic!("not a RUN");
    };
    assert_eq!(
        run.mount_sources,
        BTreeMap::from([
            (0, CopyFrom::Stage(0)),
            (1, CopyFrom::Image("alpine:3.19".into()))
        ])
    );
    let g = p.graph();
    let (from, to) = (
        p.node(StepId { stage: 0, step: 0 }).unwrap(),
        p.node(StepId { stage: 1, step: 0 }).unwrap(),
    );
    assert!(g.find_edge(from, to).is_some(), "RUN --mount from=<stage>");
}

const LINKED: &str = concat!(
    "FROM base AS build\nRUN make\n",
    "FROM base\nRUN setup\nCOPY --link f /app/f\nCOPY --link --from=build /out /out\n",
    "COPY --link --chown=1000:1000 f /owned\nCOPY --link --chown=app f /named\nRUN after\n",
);

#[test]
fn link_copies_are_keyed_without_the_parent_and_later_steps_still_see_it() {
    let inputs = |image: &str| Inputs {
        image: image.into(),
        context: [1; 32],
    };
    let a = keys(LINKED, &[], amd64(), &inputs("sha256:aa"));
    let b = keys(LINKED, &[], amd64(), &inputs("sha256:bb"));
    // [build, make, stage, setup, link f, link --from, link numeric, link named, after]
    assert_eq!(a.len(), 9);
    assert_eq!(a[4], b[4], "COPY --link of context files ignores the base");
    assert_ne!(
        a[5], b[5],
        "COPY --link --from=stage depends on that stage, whose base changed"
    );
    assert_eq!(a[6], b[6], "a numeric --chown keeps it independent");
    assert_ne!(a[7], b[7], "a --chown by name reads the parent's passwd");
    assert_ne!(a[8], b[8], "the step after a --link copy sees the new base");
    assert_ne!(a[3], a[4]);
    let arm = Platform {
        architecture: "arm64".into(),
        ..amd64()
    };
    let c = keys(LINKED, &[], arm, &inputs("sha256:aa"));
    assert_ne!(a[4], c[4], "the platform is part of a --link key");
}

#[test]
fn a_stage_ending_in_a_link_copy_has_a_final_key_that_follows_its_base() {
    let final_key = |image: &str| {
        let mut p = plan_with(
            "FROM base\nRUN x\nCOPY --link f /f\n",
            options(&[], None),
            &ImageState::default(),
        )
        .expect("plans");
        p.assign_keys(&Inputs {
            image: image.into(),
            context: [1; 32],
        })
        .expect("keys");
        let stage = &p.stages[0];
        (stage.steps[1].key, stage.final_key())
    };
    let (link_a, final_a) = final_key("sha256:aa");
    let (link_b, final_b) = final_key("sha256:bb");
    assert_eq!(link_a, link_b);
    assert_ne!(final_a, final_b);
    assert_ne!(final_a, link_a);
}
