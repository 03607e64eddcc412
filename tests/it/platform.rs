//! A base image that is an index of several platforms resolves to the host's.

use crate::support::base::{host_arch, push_multi_platform};
use crate::support::{Project, Registry, build_and_unpack};

#[test]
fn an_image_index_resolves_to_the_host_platform() {
    let registry = Registry::start();
    let base = registry.image("multi:latest");
    push_multi_platform(&base, registry.scratch());
    let project = Project::new().dockerfile(&format!("FROM {base}\nRUN cp /etc/arch /seen\n"));
    let rootfs = build_and_unpack(&registry, &project, "resolved:1");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("seen")).unwrap(),
        format!("{}\n", host_arch())
    );
}
