//! Image configs: reading a base image's settings into the planner's [`ImageState`], and writing
//! the built image's config the way BuildKit does (fresh `created`, inherited platform, the base's
//! history followed by one entry per Dockerfile instruction).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use kiln_graph::{Healthcheck, ImageState};
use serde_json::{Map, Value, json};

/// What the build keeps from a base image's config besides its runtime settings.
#[derive(Debug, Clone, Default)]
pub struct BaseConfig {
    /// Runtime settings, as the planner understands them.
    pub state: ImageState,
    /// `os`, `architecture`, `variant`, `os.version`, `os.features`: carried to the new image.
    pub platform: Map<String, Value>,
    /// The base's history entries.
    pub history: Vec<Value>,
    /// The base's layer diff ids, to check against its manifest.
    pub diff_ids: Vec<String>,
}

/// Reads a base image config (OCI or Docker, which agree on these fields).
pub fn parse_base(bytes: &[u8]) -> anyhow::Result<BaseConfig> {
    let root: Value = serde_json::from_slice(bytes).context("image config is not valid JSON")?;
    let config = root.get("config").cloned().unwrap_or(Value::Null);
    let strings = |key: &str| -> Option<Vec<String>> {
        config.get(key).and_then(Value::as_array).map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
    };
    let text = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let keys = |key: &str| -> BTreeSet<String> {
        config
            .get(key)
            .and_then(Value::as_object)
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default()
    };
    let env = strings("Env")
        .unwrap_or_default()
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (pair, String::new()),
        })
        .collect();
    let labels = config
        .get("Labels")
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect::<BTreeMap<_, _>>()
        })
        .unwrap_or_default();
    let healthcheck = config.get("Healthcheck").and_then(|hc| {
        let test = hc.get("Test")?.as_array()?;
        let number = |key: &str| hc.get(key).and_then(Value::as_i64).filter(|n| *n != 0);
        Some(Healthcheck {
            test: test
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            interval: number("Interval"),
            timeout: number("Timeout"),
            start_period: number("StartPeriod"),
            start_interval: number("StartInterval"),
            retries: number("Retries"),
        })
    });
    let state = ImageState {
        env,
        user: text("User"),
        working_dir: text("WorkingDir"),
        entrypoint: strings("Entrypoint"),
        cmd: strings("Cmd"),
        labels,
        exposed_ports: keys("ExposedPorts"),
        volumes: keys("Volumes"),
        stop_signal: text("StopSignal"),
        shell: strings("Shell"),
        healthcheck,
        onbuild: strings("OnBuild").unwrap_or_default(),
        author: root
            .get("author")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let mut platform = Map::new();
    for key in ["architecture", "os", "variant", "os.version", "os.features"] {
        if let Some(value) = root.get(key) {
            platform.insert(key.to_owned(), value.clone());
        }
    }
    let history = root
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let diff_ids = root
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(BaseConfig {
        state,
        platform,
        history,
        diff_ids,
    })
}

/// The `config` object of an image config for `state`, with Docker's field names.
fn runtime_config(state: &ImageState) -> Value {
    let mut config = Map::new();
    if let Some(user) = &state.user {
        config.insert("User".into(), json!(user));
    }
    if !state.exposed_ports.is_empty() {
        let ports: Map<String, Value> = state
            .exposed_ports
            .iter()
            .map(|port| (port.clone(), json!({})))
            .collect();
        config.insert("ExposedPorts".into(), Value::Object(ports));
    }
    let env: Vec<String> = state.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !env.is_empty() {
        config.insert("Env".into(), json!(env));
    }
    if let Some(entrypoint) = &state.entrypoint {
        config.insert("Entrypoint".into(), json!(entrypoint));
    }
    if let Some(cmd) = &state.cmd {
        config.insert("Cmd".into(), json!(cmd));
    }
    if !state.volumes.is_empty() {
        let volumes: Map<String, Value> = state
            .volumes
            .iter()
            .map(|volume| (volume.clone(), json!({})))
            .collect();
        config.insert("Volumes".into(), Value::Object(volumes));
    }
    if let Some(dir) = &state.working_dir {
        config.insert("WorkingDir".into(), json!(dir));
    }
    if !state.labels.is_empty() {
        config.insert("Labels".into(), json!(state.labels));
    }
    if let Some(signal) = &state.stop_signal {
        config.insert("StopSignal".into(), json!(signal));
    }
    if let Some(shell) = &state.shell {
        config.insert("Shell".into(), json!(shell));
    }
    if !state.onbuild.is_empty() {
        config.insert("OnBuild".into(), json!(state.onbuild));
    }
    if let Some(hc) = &state.healthcheck {
        let mut check = Map::new();
        check.insert("Test".into(), json!(hc.test));
        for (key, value) in [
            ("Interval", hc.interval),
            ("Timeout", hc.timeout),
            ("StartPeriod", hc.start_period),
            ("StartInterval", hc.start_interval),
            ("Retries", hc.retries),
        ] {
            if let Some(value) = value {
                check.insert(key.into(), json!(value));
            }
        }
        config.insert("Healthcheck".into(), Value::Object(check));
    }
    Value::Object(config)
}

/// Everything that goes into the built image's config.
#[derive(Debug)]
pub struct NewConfig<'a> {
    /// Final runtime settings of the target stage.
    pub state: &'a ImageState,
    /// Platform fields inherited from the base (or the build platform for `scratch`).
    pub platform: &'a Map<String, Value>,
    /// Diff ids of every layer, base first.
    pub diff_ids: Vec<String>,
    /// History, base first.
    pub history: Vec<Value>,
    /// RFC 3339 creation time.
    pub created: &'a str,
}

/// Serialises the image config. Keys come out in a fixed order, so equal inputs give equal bytes.
pub fn render(new: &NewConfig<'_>) -> anyhow::Result<Vec<u8>> {
    let mut root = Map::new();
    root.insert("created".into(), json!(new.created));
    if let Some(author) = &new.state.author {
        root.insert("author".into(), json!(author));
    }
    for (key, value) in new.platform {
        root.insert(key.clone(), value.clone());
    }
    root.insert("config".into(), runtime_config(new.state));
    root.insert(
        "rootfs".into(),
        json!({ "type": "layers", "diff_ids": new.diff_ids }),
    );
    root.insert("history".into(), Value::Array(new.history.clone()));
    serde_json::to_vec(&Value::Object(root)).context("encoding the image config")
}

/// A history entry in BuildKit's form.
pub fn history_entry(created: &str, created_by: &str, empty_layer: bool) -> Value {
    let mut entry = json!({
        "created": created,
        "created_by": created_by,
        "comment": "buildkit.dockerfile.v0",
    });
    if empty_layer {
        entry["empty_layer"] = json!(true);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_settings_survive_a_round_trip_through_the_planner_state() {
        let base = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin","A=b=c"],
            "Cmd":["sh"],"WorkingDir":"/w","User":"1:2","ExposedPorts":{"80/tcp":{}},
            "Labels":{"k":"v"},"Volumes":{"/data":{}},"StopSignal":"SIGINT"},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"history":[{"created_by":"x"}]}"#;
        let parsed = parse_base(base).unwrap();
        assert_eq!(parsed.state.env[1], ("A".to_owned(), "b=c".to_owned()));
        assert_eq!(parsed.diff_ids, vec!["sha256:aa"]);
        let rendered = render(&NewConfig {
            state: &parsed.state,
            platform: &parsed.platform,
            diff_ids: parsed.diff_ids.clone(),
            history: parsed.history.clone(),
            created: "2026-01-01T00:00:00Z",
        })
        .unwrap();
        let value: Value = serde_json::from_slice(&rendered).unwrap();
        assert_eq!(value["config"]["Env"], json!(["PATH=/bin", "A=b=c"]));
        assert_eq!(value["config"]["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(value["config"]["Volumes"], json!({"/data": {}}));
        assert_eq!(value["architecture"], json!("amd64"));
        assert_eq!(value["rootfs"]["diff_ids"], json!(["sha256:aa"]));
    }
}
