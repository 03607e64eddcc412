//! A step's key inputs as named fields, for people: `kiln cache explain` records them after a
//! build and compares them with the next build's to say which input made a step miss.
//!
//! These are descriptions, not the key: [`Plan::assign_keys`] alone defines keys. Each field
//! here stands for one input that `step_key` frames (values that need I/O, the base image's
//! digest and the build context's content, are described by the caller).

use crate::plan::{BaseRef, Plan};
use crate::step::{CopyFrom, StepKind};

impl Plan {
    /// The inputs of step `step` of stage `stage` as (name, value) pairs, in key order; the
    /// stage-wide ones (platform, base) first. Names are stable across builds; an input absent
    /// from the key (a default) is absent here too.
    pub fn key_inputs(&self, stage: usize, step: usize) -> Vec<(String, String)> {
        let Some(planned) = self.stages.get(stage) else {
            return Vec::new();
        };
        let Some(current) = planned.steps.get(step) else {
            return Vec::new();
        };
        let mut fields = Vec::new();
        let mut push = |name: &str, value: String| fields.push((name.to_owned(), value));
        push("platform", planned.platform.to_string());
        push(
            "base",
            match &planned.base {
                BaseRef::Scratch => "scratch".to_owned(),
                BaseRef::Image(reference) => format!("image {reference}"),
                BaseRef::Stage(base) => format!("stage {}", self.stage_label(*base)),
            },
        );
        push("instruction", current.text.clone());
        match &current.kind {
            StepKind::Run(run) => {
                push(
                    "command",
                    serde_json::to_string(&run.argv).unwrap_or_default(),
                );
                let declared_env = |name: &str| current.state.env.iter().any(|(k, _)| k == name);
                for (name, value) in &run.env {
                    let kind = if declared_env(name) { "env" } else { "arg" };
                    push(&format!("{kind} {name}"), value.clone());
                }
                if let Some(user) = &run.user {
                    push("user", user.clone());
                }
                push("workdir", run.workdir.clone());
                if let Some(script) = &run.script {
                    push("script", format!("{}\n{}", script.name, script.data));
                }
                push("network", run.network.as_str().to_owned());
                push("security", run.security.as_str().to_owned());
                for (index, mount) in run.mounts.iter().enumerate() {
                    push(&format!("mount {index}"), mount.to_string());
                }
                for (index, source) in &run.mount_sources {
                    push(&format!("mount {index} source"), self.source_label(source));
                }
            }
            StepKind::Copy(copy) => {
                push("from", self.source_label(&copy.from));
                push(
                    "sources",
                    serde_json::to_string(&copy.sources).unwrap_or_default(),
                );
                push("destination", copy.dest.clone());
                if let Some(chown) = &copy.chown {
                    push("chown", chown.clone());
                }
                if let Some(chmod) = &copy.chmod {
                    push("chmod", chmod.to_string());
                }
                for file in &copy.contents {
                    push(&format!("heredoc {}", file.name), file.data.clone());
                }
                if copy.parents {
                    push("parents", "true".to_owned());
                }
                if !copy.excludes.is_empty() {
                    push(
                        "excludes",
                        serde_json::to_string(&copy.excludes).unwrap_or_default(),
                    );
                }
            }
            StepKind::Workdir { path, user } => {
                push("path", path.clone());
                if let Some(user) = user {
                    push("user", user.clone());
                }
            }
            StepKind::Config => {
                push("created by", current.created_by.clone());
                push(
                    "image config",
                    serde_json::to_string(&current.state).unwrap_or_default(),
                );
            }
        }
        fields
    }

    fn stage_label(&self, stage: usize) -> String {
        self.stages.get(stage).map_or_else(
            || stage.to_string(),
            |s| {
                s.name
                    .clone()
                    .unwrap_or_else(|| s.dockerfile_index.to_string())
            },
        )
    }

    fn source_label(&self, from: &CopyFrom) -> String {
        match from {
            CopyFrom::Context => "context".to_owned(),
            CopyFrom::Stage(stage) => format!("stage {}", self.stage_label(*stage)),
            CopyFrom::Image(reference) => format!("image {reference}"),
        }
    }
}
