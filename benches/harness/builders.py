"""The builders under comparison and how each is run for one measurement.

State that a variant keeps or drops lives in `Job.state` (one directory per builder, scenario
and repetition): a cold run starts with it empty; what a warm run may reuse is each builder's
own business, as documented on each class."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import measure, scratch
from .measure import Usage
from .scenarios import Scenario, Workload

# Buildah (containers/image) remembers where it has seen each blob in a host-wide cache and
# mounts blobs across repositories from it; each run gets its own copy of that directory so a
# cold run is cold and repetitions do not feed each other.
BLOB_INFO_CACHE = "/var/lib/containers/cache"
PRIVATE_CACHE = (
    'set -e; mkdir -p "$2"; mount --bind "$1" "$2"; shift 2; exec "$@"'
)


@dataclass(frozen=True)
class Job:
    """One measured build: scenario, variant, repetition, where to push, where state lives."""

    scenario: Scenario
    workload: Workload
    variant: str
    rep: int
    addr: str
    destination: str
    state: Path
    log: Path


class Kiln:
    """kiln with an empty `--cache-dir` on every build: its warm run finds the image only in the
    registry (a full rebuild, unless `--kiln-arg=--cache` makes it read the layer cache the cold
    run published to `<destination>/cache`). Push-only scenarios build the image once into an
    OCI layout (`--no-push --oci-layout-path`, unmeasured) and measure `kiln push` of it."""

    name = "kiln"

    def __init__(self, binary: Path, extra_args: list[str]) -> None:
        self.binary = binary
        self.extra_args = extra_args

    def _argv(self, job: Job, cache: Path, *flags: str) -> list[str]:
        values = {"registry": job.addr, "scenario": job.scenario.id.lower(), "rep": job.rep}
        extra = [arg.format(**values) for arg in (*job.scenario.kiln_args, *self.extra_args)]
        context = job.workload.context
        return [
            str(self.binary), "build", "--context", str(context), "--dockerfile", str(context / "Dockerfile"),
            "--destination", job.destination, "--insecure", "--insecure-pull", "--cache-dir", str(cache),
            *flags, *extra,
        ]

    def prepare(self, job: Job) -> None:
        if job.scenario.push_only and not (job.state / "layout" / "index.json").exists():
            layout = str(job.state / "layout")
            measure.run(self._argv(job, job.state / "store", "--no-push", "--oci-layout-path", layout), job.log)

    def measure(self, job: Job) -> Usage:
        if job.scenario.push_only:
            push = [str(self.binary), "push", str(job.state / "layout"), "--destination", job.destination, "--insecure"]
            return measure.run(push, job.log)
        cache = job.state / f"cache-{job.variant}"
        try:
            return measure.run(self._argv(job, cache), job.log)
        finally:
            # No later run reads it, and a few of them would fill the disk at full scale.
            scratch.remove(cache)


class Buildah:
    """`buildah bud --isolation chroot --layers` then `buildah push`, with its own storage per
    repetition: cold starts empty, warm and change reuse the local layer store of the cold run
    (as peers.md measured it; Buildah has no registry cache)."""

    name = "buildah"

    def __init__(self, driver: str) -> None:
        self.driver = driver

    def _argv(self, job: Job, blob_cache: str, *args: str) -> list[str]:
        cache = job.state / blob_cache
        cache.mkdir(parents=True, exist_ok=True)
        return [
            "unshare", "--mount", "--propagation", "private", "sh", "-c", PRIVATE_CACHE, "sh",
            str(cache), BLOB_INFO_CACHE,
            "buildah", "--root", str(job.state / "root"), "--runroot", str(job.state / "runroot"),
            "--storage-driver", self.driver, *args,
        ]

    def _tag(self, job: Job) -> str:
        return f"localhost/bench-{job.scenario.id.lower()}:latest"

    def prepare(self, job: Job) -> None:
        if job.scenario.push_only and job.workload.pushed_image:
            image = f"docker://{job.addr}/{job.workload.pushed_image}:latest"
            # Pulled with a blob cache of its own: the push must not learn where the blobs came
            # from, or it would mount them instead of pushing (a built image has no such source).
            measure.run(self._argv(job, "pull-blob-cache", "pull", "--quiet", "--tls-verify=false", image), job.log)

    def measure(self, job: Job) -> Usage:
        push_dest = f"docker://{job.destination}"
        if job.scenario.push_only and job.workload.pushed_image:
            image = f"{job.addr}/{job.workload.pushed_image}:latest"
            return measure.run(self._argv(job, "blob-cache", "push", "--quiet", "--tls-verify=false", image, push_dest), job.log)
        context = job.workload.context
        build = measure.run(
            self._argv(
                job, "blob-cache", "bud", "--quiet", "--isolation", "chroot", "--layers", "--tls-verify=false",
                "-f", str(context / "Dockerfile"), "-t", self._tag(job), str(context),
            ),
            job.log,
        )
        push = measure.run(
            self._argv(job, "blob-cache", "push", "--quiet", "--tls-verify=false", self._tag(job), push_dest), job.log
        )
        return build.then(push)


# Inside new mount and pid namespaces: the context at /workspace, the host's resolver files
# bind-mounted (Kaniko leaves only mount points alone), /proc and /dev, then chroot with only the
# environment Kaniko's image sets (its Dockerfile's ENV lines), so a run depends on nothing of the
# harness's own environment.
KANIKO_POD = """set -e
root=$1; context=$2; shift 2
mount --bind "$context" "$root/workspace"
mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
mount --bind /etc/hosts "$root/etc/hosts"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
chroot=$(command -v chroot)
exec env -i PATH=/usr/local/bin:/kaniko HOME=/root USER=root SSL_CERT_DIR=/kaniko/ssl/certs \
    DOCKER_CONFIG=/kaniko/.docker/ "$chroot" "$root" /kaniko/executor "$@"
"""

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def shared_libraries(binary: Path) -> list[Path]:
    """The shared libraries (loader included) a dynamically linked executor needs inside the pod
    root, by the absolute paths `ldd` resolves; none for a static one, like Kaniko's own."""
    listing = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        return []
    found = []
    for line in listing.stdout.splitlines():
        for word in line.split():
            if word.startswith("/"):
                found.append(Path(word))
    return found


class Kaniko:
    """A Kaniko executor run the way a pod runs it (peers.md): a throw-away root filesystem
    holding only `/kaniko/executor` and CA certificates, entered with new mount and pid
    namespaces and chroot, host network, `--cache=true` with a cache repository per repetition
    (a cold run starts with an empty one); every run gets a fresh root filesystem."""

    name = "kaniko"

    def __init__(self, executor: Path) -> None:
        self.executor = executor

    def _root(self, job: Job) -> Path:
        root = job.state / f"pod-{job.variant}"
        scratch.remove(root)
        for directory in ("kaniko/ssl/certs", "kaniko/.docker", "workspace", "proc", "dev", "etc/ssl/certs", "tmp"):
            (root / directory).mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.executor, root / "kaniko" / "executor")
        for library in shared_libraries(self.executor):
            target = root / library.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(library, target)
        if CA_BUNDLE.exists():
            shutil.copy2(CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
            shutil.copy2(CA_BUNDLE, root / "kaniko/ssl/certs/ca-certificates.crt")
        for name in ("resolv.conf", "hosts"):
            (root / "etc" / name).touch()
        return root

    def prepare(self, job: Job) -> None:
        return None

    def measure(self, job: Job) -> Usage:
        root = self._root(job)
        cache_repo = f"{job.addr}/kaniko-cache/{job.scenario.id.lower()}-r{job.rep}"
        argv = [
            "unshare", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c", KANIKO_POD, "sh",
            str(root), str(job.workload.context),
            "--context", "dir:///workspace", "--dockerfile", "/workspace/Dockerfile",
            "--destination", job.destination, "--cache=true", "--cache-repo", cache_repo,
            "--insecure", "--insecure-pull", "--insecure-registry", job.addr, "--force",
        ]
        try:
            return measure.run(argv, job.log)
        finally:
            scratch.remove(root)
