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

const PINNED_SCHEME: &str = "kiln 2025 kiln-graph node key v1";

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
        "06ba1b41afd900072a215c928d71d3123d3f4776c9061165bc4b848bd8fc4c12",
        // ARG VERSION=1.0
        "9338eb11fc9023bab5ff43367564f9c0c38f3ea7f81bee6b00bc738247171457",
        // ENV GREETING=hello
        "60e80eee0d13755d751d931556e97cf9b58afd6a127431b5820f7f2699a61f10",
        // WORKDIR /src
        "7ee0f04ff64766a382b42ca6b925fc784a0886c56ce66e5a7981bf082f53b6ab",
        // COPY --chown=1:2 --chmod=640 app.txt ./
        "e282691f3048f18c414cef1ff2814ebd3fe79a37adece8d6784155a7f85fa19c",
        // RUN echo ...
        "c1fde9a000846f24e0dac2f6d0f94a417609f7cc5b8e1be0c42fb5a39c5245f3",
        // stage 1 (FROM scratch)
        "ef0b09718f70ed9a5dc7a2f9d93fae96982994b055f37015a08804ce59015c86",
        // COPY --from=build
        "6e335ae127f99855f4df0a037c155c23befb9b0cf7d7bdb6e07d7f16ad706201",
        // COPY --from=example.com/tools:2
        "03f5c435fb1f30ae7bb1d6080d33f4dcfaf2daf8643398e403a11f051e641647",
        // LABEL version=${VERSION}
        "52994c4a6e900cee62612d97b6250de8d20e97894a0ce9ae3af3bc9a941cdaff",
        // CMD
        "84f52c631213e71c187e0d75e9ad58552f06e49e78808701b5f338d9f369c708",
    ];
    assert_eq!(
        keys(),
        expected,
        "node keys changed under scheme {KEY_SCHEME:?}: bump the version in graph/src/key.rs \
         and re-pin"
    );
}
