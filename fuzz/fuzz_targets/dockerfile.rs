//! Feeds arbitrary text to the Dockerfile parser and, when it parses, to the formatter (whose
//! output must parse to the same instructions) and the planner: none may panic, loop or
//! overflow, whatever the input. A crash found here becomes a regression
//! test in `graph/src/syntax/format/tests.rs`.
#![no_main]

use std::collections::BTreeMap;

use kiln_graph::{ImageState, PlanOptions, Planner, Platform, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(dockerfile) = parse(text, "Dockerfile") else {
        return;
    };
    // What the formatter writes must parse back to the same instructions.
    let formatted = dockerfile.to_string();
    match parse(&formatted, "Dockerfile") {
        Ok(again) => {
            let before: Vec<_> = dockerfile.instructions.iter().map(|i| &i.kind).collect();
            let after: Vec<_> = again.instructions.iter().map(|i| &i.kind).collect();
            assert_eq!(before, after, "formatted:\n{formatted}");
        }
        Err(e) => panic!("formatted Dockerfile does not parse: {e}\n{formatted}"),
    }
    let amd64 = Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    };
    let options = PlanOptions {
        build_args: vec![("A".into(), "1".into())],
        target: None,
        platform: amd64.clone(),
        build_platform: amd64,
    };
    let Ok(planner) = Planner::new(&dockerfile, options) else {
        return;
    };
    let bases: BTreeMap<String, ImageState> = planner
        .external_images()
        .into_iter()
        .map(|image| (image, ImageState::default()))
        .collect();
    let _ = planner.plan(&bases);
});
