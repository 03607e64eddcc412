//! Pins the node-key scheme: the keys of a fixed plan with fixed inputs.
//!
//! Keys are persisted (the local index, remote caches), so a change to what a key hashes or how
//! must come with a new [`KEY_SCHEME`] version: otherwise a key computed by the new scheme could
//! meet a record written under the old one. When this test fails after an intended change, bump
//! the version in `graph/src/key.rs`, document the change in `docs/design.md` ("Node keys") and
//! re-pin both values below.

#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;

use kiln_graph::{
    CopyStep, ImageState, KEY_SCHEME, KeyInputs, PlanOptions, Planner, Platform, parse,
};

const PINNED_SCHEME: &str = "kiln 2025 kiln-graph node key v2";

/// Every node type: image and stage bases, RUN, COPY from the context, from a stage and from an
/// image, WORKDIR, and configuration-only steps.
const DOCKERFILE: &str = r#"ARG BASE=example.com/base:1
FROM ${BASE} AS build
ARG VERSION=1.0
ENV GREETING=hello
WORKDIR /src
COPY --chown=1:2 --chmod=640 app.txt ./
RUN echo "$GREETING $VERSION" > out
FROM scratch
COPY --from=build /src/out /out
COPY --from=example.com/tools:2 /bin/tool /bin/tool
LABEL version=${VERSION}
CMD ["/bin/tool"]
"#;

struct FixedInputs;

impl KeyInputs for FixedInputs {
    fn image_digest(&self, reference: &str) -> Option<String> {
        let digest = blake3::hash(reference.as_bytes()).to_hex();
        Some(format!("sha256:{digest}"))
    }

    fn context_digest(&self, copy: &CopyStep) -> Result<[u8; 32], String> {
        Ok(*blake3::hash(copy.sources.join("\n").as_bytes()).as_bytes())
    }
}

fn keys() -> Vec<String> {
    let parsed = parse(DOCKERFILE, "Dockerfile").unwrap();
    let amd64 = Platform {
        os: "linux".to_owned(),
        architecture: "amd64".to_owned(),
        variant: None,
    };
    let planner = Planner::new(
        &parsed,
        PlanOptions {
            build_args: vec![("VERSION".to_owned(), "2.0".to_owned())],
            target: None,
            platform: amd64.clone(),
            build_platform: amd64,
        },
    )
    .unwrap();
    let bases: BTreeMap<String, ImageState> = planner
        .external_images()
        .into_iter()
        .map(|reference| (reference, ImageState::default()))
        .collect();
    let mut plan = planner.plan(&bases).unwrap();
    plan.assign_keys(&FixedInputs).unwrap();
    plan.build_order()
        .into_iter()
        .flat_map(|index| {
            let stage = &plan.stages[index];
            std::iter::once(stage.key)
                .chain(stage.steps.iter().map(|step| step.key))
                .map(|key| key.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_key_scheme_version_is_the_pinned_one() {
    assert_eq!(
        KEY_SCHEME, PINNED_SCHEME,
        "the key scheme changed: re-pin the keys below for the new version"
    );
}

#[test]
fn keys_of_a_fixed_plan_are_pinned_for_this_scheme_version() {
    let expected = [
        // stage build (FROM ${BASE})
        "6aa492732d96b1c82876267e1f034393b136e529e4f7e336b9b6cf5adf2a6ca8",
        // ARG VERSION=1.0
        "737fc593f2430eb63b7203d586e596346770e860ffbac509688b8f5e78abce05",
        // ENV GREETING=hello
        "ee2655deb8c24edc674b8e7212cc70230ba66f91dada0ed2a92d3af287f8fef0",
        // WORKDIR /src
        "e6603941a12637f35aa52d405e4d3e26a8a7a876887136de4263de5b5dc93c24",
        // COPY --chown=1:2 --chmod=640 app.txt ./
        "e22e6de03cfc0f3b92d47ae3e2921610cc7edb6d182ef3e262067b0a83268f27",
        // RUN echo ...
        "3a0cf50430c0ec6bbe476f1f2a00c57c2964fee09d245e10e52527d0f01c6cb6",
        // stage 1 (FROM scratch)
        "7bd3abd43b58dc28d5ca5949cfa075a85ed091e97f20d465f67f3370c523a308",
        // COPY --from=build
        "6120951549537c1d4487556e70bc3a20411e080aa4284afb6f7589f5a9bd24b4",
        // COPY --from=example.com/tools:2
        "6c55955d7a8d51152a73a5d9a900146718e6f91391d0a2b1d43385a74f23a017",
        // LABEL version=${VERSION}
        "a43b1759224d383284589e9484d99726b7fd86b9f13a1435940c441868c90ff4",
        // CMD
        "d5de79e9f5ec99c38b7efdf4b969a3c12c88801502ac585dc080664ebee9fa39",
    ];
    assert_eq!(
        keys(),
        expected,
        "node keys changed under scheme {KEY_SCHEME:?}: bump the version in graph/src/key.rs \
         and re-pin"
    );
}
