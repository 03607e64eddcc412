//! The plan for Graphviz: one node per step, one cluster per stage, the step DAG's edges.
//!
//! Node names are `s<stage>_<step>`; a stage without steps gets a dashed `s<stage>_base`
//! node so its cluster is still drawn. Labels are escaped for DOT quoted strings.

use std::io::{self, Write};

use kiln_graph::StepId;

use super::{Kind, Planned, UNFETCHED_NOTE, base_text, stage_title};

/// Writes the plan as a `digraph`.
pub(crate) fn write(out: &mut impl Write, planned: &Planned) -> io::Result<()> {
    let plan = &planned.plan;
    writeln!(out, "digraph plan {{")?;
    writeln!(
        out,
        "  label=\"{}\";",
        escape(&format!(
            "{} ({}); {UNFETCHED_NOTE}",
            planned.dockerfile, planned.platform
        ))
    )?;
    writeln!(out, "  labelloc=t;")?;
    writeln!(out, "  node [shape=box, fontname=monospace];")?;
    for stage in &plan.stages {
        let mut title = format!(
            "{} FROM {}",
            stage_title(plan, stage.index),
            base_text(plan, &stage.base)
        );
        if stage.index == plan.target {
            title.push_str(" (target)");
        }
        writeln!(out, "  subgraph cluster_{} {{", stage.index)?;
        writeln!(out, "    label=\"{}\";", escape(&title))?;
        if stage.steps.is_empty() {
            writeln!(
                out,
                "    s{}_base [label=\"{}\", style=dashed];",
                stage.index,
                escape(&format!(
                    "{}: FROM {}",
                    stage.line,
                    base_text(plan, &stage.base)
                ))
            )?;
        }
        for (i, step) in stage.steps.iter().enumerate() {
            let label = format!(
                "{}: {} [{}]",
                step.line,
                step.text,
                Kind::of(&step.kind).as_str()
            );
            writeln!(
                out,
                "    {} [label=\"{}\"];",
                node(StepId {
                    stage: stage.index,
                    step: i
                }),
                escape(&label)
            )?;
        }
        writeln!(out, "  }}")?;
    }
    let graph = plan.graph();
    for edge in graph.raw_edges() {
        writeln!(
            out,
            "  {} -> {};",
            node(graph[edge.source()]),
            node(graph[edge.target()])
        )?;
    }
    writeln!(out, "}}")
}

/// The DOT node name of a step.
fn node(id: StepId) -> String {
    format!("s{}_{}", id.stage, id.step)
}

/// Escapes text for a DOT double-quoted string: quotes and backslashes (which DOT would read
/// as its own `\n`/`\l` escapes) are escaped, line breaks become `\n`.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\r' => {}
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{MULTI_STAGE, planned};
    use super::*;

    fn render(dockerfile: &str) -> String {
        let mut out = Vec::new();
        write(&mut out, &planned(dockerfile, None)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_step_is_a_node_in_its_stage_cluster_and_edges_follow_the_graph() {
        let dot = render(MULTI_STAGE);
        assert!(dot.starts_with("digraph plan {"), "{dot}");
        assert!(dot.trim_end().ends_with('}'), "{dot}");
        let cluster = dot.find("subgraph cluster_1 {").unwrap();
        let copy = dot
            .find("s1_0 [label=\"6: COPY --from=build /src/out /out [copy]\"];")
            .unwrap();
        assert!(cluster < copy, "{dot}");
        assert!(
            dot.contains("s0_0 [label=\"2: WORKDIR /src [workdir]\"];"),
            "{dot}"
        );
        assert!(
            dot.contains("s1_1 [label=\"7: LABEL a=b [config]\"];"),
            "{dot}"
        );
        assert!(dot.contains("  s0_1 -> s1_0;"), "{dot}");
        assert!(dot.contains("  s0_0 -> s0_1;"), "{dot}");
        assert_eq!(dot.matches("->").count(), 3, "{dot}");
    }

    #[test]
    fn quotes_and_backslashes_in_instructions_are_escaped() {
        let dot = render(MULTI_STAGE);
        assert!(
            dot.contains(r#"3: RUN echo \"hi\" > /src/out [run]"#),
            "{dot}"
        );
        assert_eq!(escape("a\\nb\"\nc"), r#"a\\nb\"\nc"#);
    }

    #[test]
    fn a_stage_without_steps_still_has_a_node() {
        let dot = render("FROM alpine:3\n");
        assert!(
            dot.contains("s0_base [label=\"1: FROM alpine:3\", style=dashed];"),
            "{dot}"
        );
    }
}
