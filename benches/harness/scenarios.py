"""The five scenarios: their Dockerfiles, corpora, base images and the one-file change.

Each scenario's Dockerfile is written into its context with the registry's address (a fresh
port every run), so every builder reads the same Dockerfile and context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import corpus, layout
from .corpus import Scale
from .layout import LayerWriter

BUILD_VARIANTS = ("cold", "warm", "change")
PUSH_VARIANTS = ("cold", "warm")


@dataclass(frozen=True)
class Workload:
    """A prepared scenario: the context, how to reset it and change one file in it, and the
    images it starts from in the registry."""

    context: Path
    reset: Callable[[], None]
    change: Callable[[int], None]
    bases: tuple[str, ...]
    pushed_image: str | None = None


@dataclass(frozen=True)
class Scenario:
    """One benchmark scenario. `kiln_args` are appended to kiln's command line for this
    scenario only (the hook for `--cache`/`--cache-repo` once kiln has a layer cache);
    `push_only` scenarios push an image that is already built."""

    id: str
    title: str
    variants: tuple[str, ...]
    prepare: Callable[[Path, Scale, "Setup"], Workload]
    kiln_args: tuple[str, ...] = ()
    push_only: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Setup:
    """What preparing a scenario needs: the registry addresses and a base-image pusher."""

    addr: str
    direct: str
    push: Callable[[Path, str], None]


def _one_file(path: Path, original: bytes, changed: Callable[[int], bytes]):
    def reset() -> None:
        corpus.write(path, original)

    def change(rep: int) -> None:
        corpus.write(path, changed(rep))

    return reset, change


def _image(root: Path, scale: Scale, setup: Setup, name: str, fill: Callable[[LayerWriter], None]) -> str:
    """A single-layer base image, generated once per scale and pushed to this run's registry."""

    def generate(out: Path) -> None:
        writer = LayerWriter(out / "blobs" / "sha256")
        fill(writer)
        layout.write_image(out, writer.finish(), f"kiln bench {name} base")

    path = corpus.cached(root / f"{name}-layout", scale, generate)
    setup.push(path, f"{setup.direct}/bench/{name}:latest")
    return f"bench/{name}"


def busybox_base(root: Path, scale: Scale, setup: Setup) -> str:
    return _image(root, scale, setup, "busybox", corpus.busybox_tree)


def _dockerfile(context: Path, text: str) -> None:
    (context / "Dockerfile").write_text(text)


def prepare_s1(root: Path, scale: Scale, setup: Setup) -> Workload:
    base = busybox_base(root, scale, setup)

    def generate(out: Path) -> None:
        corpus.s1_context(out, scale)
        corpus.fix_dir_times(out)

    context = corpus.cached(root / "s1-context", scale, generate)
    _dockerfile(
        context,
        f"FROM {setup.addr}/{base}:latest\nCOPY . /data/\n"
        "RUN cat /data/VERSION && touch /data/src/d000/f000.txt && echo built > /data/stamp && ls /data/blobs | wc -l\n"
        'CMD ["/bin/sh"]\n',
    )
    reset, change = _one_file(context / "VERSION", b"1\n", lambda rep: f"{rep + 1}\n".encode())
    return Workload(context, reset, change, (base,))


def prepare_s2(root: Path, scale: Scale, setup: Setup) -> Workload:
    base = _image(root, scale, setup, "s2-base", lambda layer: corpus.s2_tree(layer, scale))
    context = root / "s2-context"
    context.mkdir(parents=True, exist_ok=True)
    _dockerfile(
        context,
        f"FROM {setup.addr}/{base}:latest\n"
        "RUN echo one > /etc/s2-one && touch /corpus/d000/f000\n"
        "COPY app.txt /opt/app.txt\n"
        "RUN cat /opt/app.txt > /opt/app.copy && rm /corpus/d001/f001\n"
        "RUN mkdir -p /opt/out && echo done > /opt/out/done && ls /corpus | wc -l\n",
    )
    reset, change = _one_file(context / "app.txt", b"app v1\n", lambda rep: f"app v{rep + 1}\n".encode())
    return Workload(context, reset, change, (base,))


def _s3_stage(name: str, base: str, files: int) -> str:
    return (
        f"FROM {base} AS {name}\n"
        f"COPY {name}/ /in/\n"
        f"RUN mkdir -p /out/files && n=0 && while [ $n -lt {files} ]; do echo \"{name} $n\" > /out/files/f$n; n=$((n+1)); done"
        " && gzip -1 -c /in/data.bin > /out/data.gz && sha256sum /in/input.txt > /out/input.sum\n\n"
    )


def prepare_s3(root: Path, scale: Scale, setup: Setup) -> Workload:
    base = busybox_base(root, scale, setup)
    image = f"{setup.addr}/{base}:latest"

    def generate(out: Path) -> None:
        corpus.s3_context(out, scale)
        corpus.fix_dir_times(out)

    context = corpus.cached(root / "s3-context", scale, generate)
    stages = "".join(_s3_stage(name, image, scale.s3_files) for name in ("a", "b", "c"))
    _dockerfile(
        context,
        stages + f"FROM {image}\n"
        "COPY --from=a /out/ /srv/a/\nCOPY --from=b /out/ /srv/b/\nCOPY --from=c /out/ /srv/c/\n"
        "RUN cat /srv/*/input.sum\n",
    )
    reset, change = _one_file(
        context / "b" / "input.txt", b"stage b input v1\n", lambda rep: f"stage b input v{rep + 1}\n".encode()
    )
    return Workload(context, reset, change, (base,))


def prepare_s4(root: Path, scale: Scale, setup: Setup) -> Workload:
    def generate(out: Path) -> None:
        corpus.s4_context(out, scale)
        corpus.fix_dir_times(out)

    context = corpus.cached(root / "s4-context", scale, generate)
    _dockerfile(context, "FROM scratch\nCOPY big/ /big/\n")
    reset, change = _one_file(context / "big" / "VERSION", b"1\n", lambda rep: f"{rep + 1}\n".encode())
    return Workload(context, reset, change, ())


def prepare_s5(root: Path, scale: Scale, setup: Setup) -> Workload:
    image = _image(root, scale, setup, "s5-image", lambda layer: corpus.s5_tree(layer, scale))
    context = root / "s5-context"
    context.mkdir(parents=True, exist_ok=True)
    _dockerfile(context, f"FROM {setup.addr}/{image}:latest\nLABEL bench=s5\n")
    return Workload(context, lambda: None, lambda rep: None, (), pushed_image=image)


SCENARIOS = (
    Scenario("S1", "COPY-heavy: 20k files / 300 MB context on busybox", BUILD_VARIANTS, prepare_s1),
    Scenario("S2", "RUN-heavy: 200k-file base, RUN steps touching few files", BUILD_VARIANTS, prepare_s2),
    Scenario("S3", "multi-stage: three independent stages, a final stage copying from each", BUILD_VARIANTS, prepare_s3),
    Scenario("S4", "a 2 GB single-layer image", BUILD_VARIANTS, prepare_s4),
    Scenario(
        "S5",
        "push-only: a built 1 GB image to a fresh repository",
        PUSH_VARIANTS,
        prepare_s5,
        push_only=True,
        notes=(
            "kiln's S5 is `kiln push` of the image built (unmeasured) into an OCI layout with "
            "`--no-push --oci-layout-path`; Buildah's is `buildah push` of the image it pulled",
        ),
    ),
)
