//! The plan for people: stages in build order, each with its base, its dependencies and its
//! steps as `line: instruction [kind]`.

use std::io::{self, Write};

use kiln_graph::{NetworkMode, SecurityMode, StepKind};

use super::{Kind, Planned, UNFETCHED_NOTE, base_text, stage_title};

/// Writes the plan as an indented tree.
pub(crate) fn write(out: &mut impl Write, planned: &Planned) -> io::Result<()> {
    let plan = &planned.plan;
    writeln!(
        out,
        "Plan for {} ({})",
        planned.dockerfile, planned.platform
    )?;
    writeln!(out, "Note: {UNFETCHED_NOTE}.")?;
    for index in plan.build_order() {
        let Some(stage) = plan.stages.get(index) else {
            continue;
        };
        writeln!(out)?;
        writeln!(
            out,
            "{} (line {}) FROM {}",
            stage_title(plan, index),
            stage.line,
            base_text(plan, &stage.base)
        )?;
        let deps = plan.stage_dependencies(index);
        if deps.is_empty() {
            writeln!(out, "  depends on: nothing")?;
        } else {
            let names: Vec<String> = deps.iter().map(|&d| stage_title(plan, d)).collect();
            writeln!(out, "  depends on: {}", names.join(", "))?;
        }
        if stage.steps.is_empty() {
            writeln!(out, "  (no steps)")?;
        }
        for step in &stage.steps {
            let text = step.text.replace('\n', " ");
            let kind = Kind::of(&step.kind).as_str();
            writeln!(out, "  {}: {text} [{kind}]", step.line)?;
            for detail in details(&step.kind) {
                writeln!(out, "      {detail}")?;
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "target: {}", stage_title(plan, plan.target))
}

/// What a step does beyond its first line: heredoc files and scripts, mounts, modes.
fn details(kind: &StepKind) -> Vec<String> {
    let mut out = Vec::new();
    match kind {
        StepKind::Run(run) => {
            if let Some(script) = &run.script {
                out.push(format!(
                    "script /dev/pipes/{} ({} bytes)",
                    script.name,
                    script.data.len()
                ));
            }
            for mount in &run.mounts {
                out.push(format!("mount {mount} (not executed yet)"));
            }
            if run.network != NetworkMode::Default {
                out.push(format!("network {}", run.network.as_str()));
            }
            if run.security != SecurityMode::Sandbox {
                out.push(format!("security {}", run.security.as_str()));
            }
        }
        StepKind::Copy(copy) => {
            for file in &copy.contents {
                out.push(format!(
                    "heredoc file {} ({} bytes)",
                    file.name,
                    file.data.len()
                ));
            }
            if copy.parents {
                out.push("parents kept".to_owned());
            }
            for exclude in &copy.excludes {
                out.push(format!("exclude {exclude}"));
            }
            if copy.link {
                out.push("link (same layer as without)".to_owned());
            }
        }
        StepKind::Workdir { .. } | StepKind::Config => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{MULTI_STAGE, planned};
    use super::*;

    fn render(dockerfile: &str, target: Option<&str>) -> String {
        let mut out = Vec::new();
        write(&mut out, &planned(dockerfile, target)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn stages_appear_in_build_order_with_steps_kinds_and_dependencies() {
        let text = render(MULTI_STAGE, None);
        let build = text
            .find("stage 0 \"build\" (line 1) FROM alpine:3")
            .unwrap();
        let last = text.find("stage 1 (line 5) FROM scratch").unwrap();
        assert!(build < last, "{text}");
        assert!(text.contains("  2: WORKDIR /src [workdir]"), "{text}");
        assert!(
            text.contains("  3: RUN echo \"hi\" > /src/out [run]"),
            "{text}"
        );
        assert!(
            text.contains("  6: COPY --from=build /src/out /out [copy]"),
            "{text}"
        );
        assert!(text.contains("  7: LABEL a=b [config]"), "{text}");
        assert!(text.contains("depends on: stage 0 \"build\""), "{text}");
        assert!(text.trim_end().ends_with("target: stage 1"), "{text}");
    }

    #[test]
    fn the_output_says_base_configs_were_not_fetched() {
        assert!(render(MULTI_STAGE, None).contains("base image configs were not fetched"));
    }

    #[test]
    fn run_and_copy_details_are_listed_under_their_step() {
        let text = render(
            "FROM alpine:3\nRUN --mount=type=tmpfs,target=/t --network=none <<EOF\n#!/bin/sh\nEOF\nCOPY --parents --exclude=x <<f /d/\nhi\nf\n",
            None,
        );
        for expected in [
            "      script /dev/pipes/EOF (10 bytes)",
            "      mount type=tmpfs,target=/t (not executed yet)",
            "      network none",
            "      heredoc file f (3 bytes)",
            "      parents kept",
            "      exclude x",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn a_stage_without_steps_says_so() {
        let text = render("FROM alpine:3\n", None);
        assert!(text.contains("(no steps)"), "{text}");
    }
}
