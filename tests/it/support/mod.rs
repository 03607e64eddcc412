//! The world the integration tests describe: registries, base images, build contexts, and the
//! kiln and inspection commands run against them.

pub mod base;
pub mod fake_cloud;
pub mod files;
pub mod git_server;
pub mod hostile_registry;
pub mod kiln;
pub mod pki;
pub mod pod;
pub mod proxy;
pub mod registry;
pub mod sigv4;
pub mod token_server;
pub mod tools;

use std::path::{Path, PathBuf};

pub use kiln::{Kiln, Outcome};
pub use registry::Registry;

/// Builds `project`, pushes it to `name` on `registry` and returns the image's root filesystem
/// as umoci unpacks it.
pub fn build_and_unpack(registry: &Registry, project: &Project, name: &str) -> PathBuf {
    let destination = registry.image(name);
    Kiln::build(project.path())
        .push_to(&destination)
        .run()
        .success();
    tools::unpack(&format!("docker://{destination}"), registry.scratch())
}

/// A temporary build context directory.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// An empty context.
    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Adds a file (parents created) and returns the project for chaining.
    pub fn file(self, path: &str, contents: &str) -> Project {
        let full = self.dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, contents).unwrap();
        self
    }

    /// Sets the Dockerfile.
    pub fn dockerfile(self, contents: &str) -> Project {
        self.file("Dockerfile", contents)
    }

    /// The context directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A scratch path next to (not inside) the context, for outputs.
    pub fn out(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().with_extension("out");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.path().with_extension("out"));
    }
}
