"""Command line and the order of a run: tools, kiln binary, registry, then per scenario its
corpus, every repetition of every builder and variant, and its physical limits; the report last."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import distribution, layout, scratch
from .builders import Buildah, Job, Kaniko, Kiln
from .corpus import SCALES
from .errors import BenchError
from .limits import measure_limits
from .registry import Registry
from .report import machine, render
from .results import Results, Sample
from .scenarios import SCENARIOS, Scenario, Setup

REPO = Path(__file__).resolve().parents[2]

# program -> Debian package
TOOLS = {
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "buildah": "buildah",
    "b3sum": "b3sum",
    "zstd": "zstd",
    "gzip": "gzip",
    "sha256sum": "coreutils",
    "curl": "curl",
    "unshare": "util-linux",
    "lscpu": "util-linux",
    "/usr/bin/time": "time",
}


# kiln's layer cache, as CI users run it: a per-repetition cache repository keeps every cold run
# cold, and the warm and change runs of that repetition find their layers in it with an empty
# local store, as the issue defines warm.
KILN_CACHE_ARGS = ("--cache=true", "--cache-repo={registry}/kiln-cache/{scenario}-r{rep}")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benches/run",
        description="kiln side by side with Buildah (and Kaniko if KANIKO_EXECUTOR is set) on generated corpora.",
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions of every cell (default 3)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full", help="corpus size (default full)")
    parser.add_argument("--smoke", action="store_true", help="tiny corpora and one run: --scale smoke --runs 1")
    parser.add_argument("--scenarios", default=",".join(s.id for s in SCENARIOS), help="e.g. S1,S3")
    parser.add_argument("--variants", default="cold,warm,change", help="subset of cold,warm,change")
    parser.add_argument("--kiln", type=Path, help="kiln binary (default: cargo build --release)")
    parser.add_argument(
        "--kiln-arg", action="append", default=[], metavar="ARG",
        help="extra kiln argument, repeatable; {registry}, {scenario}, {rep} are substituted "
        "(e.g. --kiln-arg=--cache-repo={registry}/cache/{scenario})",
    )
    parser.add_argument(
        "--kiln-no-cache", action="store_true",
        help="measure kiln without its layer cache (by default every kiln build runs with "
        f"{' '.join(KILN_CACHE_ARGS)})",
    )
    parser.add_argument("--buildah-storage", choices=("auto", "overlay", "vfs"), default="auto",
                        help="Buildah storage driver (auto: overlay if it works here, else vfs)")
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/kiln-bench"),
                        help="corpora (kept between runs) and scratch state")
    parser.add_argument("--out", type=Path, help="results file (default <work>/results-<time>.md)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scale, args.runs = "smoke", 1
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def check_tools() -> None:
    if os.geteuid() != 0:
        raise BenchError("run as root: kiln and Buildah need namespaces and file ownership")
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise BenchError(f"missing tools: run `apt-get install {' '.join(missing)}`")


def kiln_binary(given: Path | None) -> Path:
    """The kiln to measure: the one given, else a release build of this checkout."""
    if given is not None:
        if not os.access(given, os.X_OK):
            raise BenchError(f"--kiln {given} is not an executable file")
        return given.resolve()
    print("building kiln (cargo build --release -p kiln-cli --bin kiln)", file=sys.stderr)
    build = subprocess.run(["cargo", "build", "--release", "--locked", "-p", "kiln-cli", "--bin", "kiln"], cwd=REPO)
    if build.returncode != 0:
        raise BenchError("cargo build --release of kiln failed")
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=REPO, capture_output=True, check=True
    )
    return Path(json.loads(metadata.stdout)["target_directory"]) / "release" / "kiln"


def buildah_driver(choice: str, work: Path) -> str:
    """overlay when a trivial build with it succeeds here (the faster driver), else vfs."""
    if choice != "auto":
        return choice
    probe = Path(tempfile.mkdtemp(prefix="buildah-probe-", dir=work))
    (probe / "ctx").mkdir()
    (probe / "ctx" / "Dockerfile").write_text("FROM scratch\nCOPY Dockerfile /probe\n")
    argv = [
        "unshare", "--mount", "buildah", "--root", str(probe / "root"), "--runroot", str(probe / "run"),
        "--storage-driver", "overlay", "bud", "--quiet", "--isolation", "chroot", str(probe / "ctx"),
    ]
    works = subprocess.run(argv, capture_output=True).returncode == 0
    shutil.rmtree(probe, ignore_errors=True)
    return "overlay" if works else "vfs"


def version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def run_scenario(scenario: Scenario, args, builders, registry: Registry, results: Results, dirs) -> None:
    corpus_root, state_root, logs = dirs
    setup = Setup(registry.addr, registry.direct, lambda path, image: layout.push(path, image, logs / "setup.log"))
    print(f"{scenario.id}: preparing the corpus ({args.scale})", file=sys.stderr)
    workload = scenario.prepare(corpus_root, SCALES[args.scale], setup)
    variants = [v for v in args.variants.split(",") if v in scenario.variants]
    images: dict[str, tuple[str, dict]] = {}
    for rep in range(1, args.runs + 1):
        for builder in builders:
            repo = f"{scenario.id.lower()}/{builder.name}-r{rep}"
            state = state_root / scenario.id / f"{builder.name}-r{rep}"
            state.mkdir(parents=True, exist_ok=True)
            log = logs / scenario.id / f"{builder.name}-r{rep}.log"

            def job(variant: str) -> Job:
                return Job(scenario, workload, variant, rep, registry.addr, f"{registry.addr}/{repo}:latest", state, log)

            workload.reset()
            try:
                builder.prepare(job("prepare"))
            except BenchError as err:
                for variant in variants:
                    results.cell(scenario.id, variant, builder.name).error = str(err)
                continue
            for variant in variants:
                cell = results.cell(scenario.id, variant, builder.name)
                if cell.error:
                    continue
                if variant == "cold":
                    workload.reset()
                elif variant == "change":
                    workload.change(rep)
                before = registry.uploaded()
                try:
                    usage = builder.measure(job(variant))
                except BenchError as err:
                    cell.error = str(err)
                    print(f"{scenario.id} {variant} {builder.name} r{rep}: FAILED: {err}", file=sys.stderr)
                    continue
                cell.samples.append(Sample(usage, registry.uploaded() - before))
                print(
                    f"{scenario.id} {variant:6} {builder.name:8} r{rep}: {usage.wall:7.2f} s wall, "
                    f"{usage.cpu:7.2f} s CPU, {usage.rss_kib / 1024:6.0f} MiB",
                    file=sys.stderr,
                )
                if builder.name == "kiln" and rep == 1 and variant in ("cold", "change"):
                    images[variant] = (repo, distribution.manifest(registry.direct, repo))
            workload.reset()
            scratch.remove(state)
    if "cold" in images:
        print(f"{scenario.id}: measuring the physical limits", file=sys.stderr)
        try:
            bases = [distribution.manifest(registry.direct, base) for base in workload.bases]
            results.limits[scenario.id] = measure_limits(
                workload.context, registry.direct, registry.addr, images["cold"], images.get("change"),
                bases, state_root / scenario.id / "limits", scenario.id.lower(),
            )
        except BenchError as err:
            results.limit_errors[scenario.id] = str(err)
    scratch.remove(state_root / scenario.id)


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        return bench(args, argv)
    except BenchError as err:
        print(f"benches/run: {err}", file=sys.stderr)
        return 1


def bench(args: argparse.Namespace, argv: list[str]) -> int:
    check_tools()
    wanted = args.scenarios.split(",")
    unknown = [name for name in wanted if name not in {s.id for s in SCENARIOS}]
    if unknown:
        raise BenchError(f"unknown scenarios {unknown}: choose from {[s.id for s in SCENARIOS]}")
    scenarios = [s for s in SCENARIOS if s.id in wanted]
    variants = args.variants.split(",")
    if any(v not in ("cold", "warm", "change") for v in variants):
        raise BenchError(f"--variants {args.variants}: choose from cold,warm,change")

    executor = os.environ.get("KANIKO_EXECUTOR")
    if executor and not (Path(executor).is_file() and os.access(executor, os.X_OK)):
        raise BenchError(f"KANIKO_EXECUTOR={executor} is not an executable file")
    kiln = kiln_binary(args.kiln)
    args.work.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(tempfile.mkdtemp(prefix=f"run-{stamp}-", dir=args.work))
    driver = buildah_driver(args.buildah_storage, run_dir)
    kiln_args = [*(() if args.kiln_no_cache else KILN_CACHE_ARGS), *args.kiln_arg]
    builders = [Kiln(kiln, kiln_args), Buildah(driver)]
    notes = [f"Buildah storage: {driver}; Buildah's warm and change runs reuse its local layer store."]
    if executor:
        builders.append(Kaniko(Path(executor)))
    else:
        message = "KANIKO_EXECUTOR is not set: the Kaniko column is skipped"
        print(message, file=sys.stderr)
        notes.append(message)
    if args.kiln_no_cache:
        notes.append("kiln ran without its layer cache (--kiln-no-cache): its warm and change runs are full rebuilds.")
    else:
        notes.append("kiln's warm and change runs start with an empty --cache-dir: they find the layer cache only "
                     "in the registry (--cache-repo), as an ephemeral CI pod does.")

    results = Results([b.name for b in builders])
    registry = Registry(run_dir / "registry", "docker-registry")
    try:
        dirs = (args.work / "corpus" / args.scale, run_dir / "state", run_dir / "logs")
        for directory in dirs:
            directory.mkdir(parents=True, exist_ok=True)
        for scenario in scenarios:
            run_scenario(scenario, args, builders, registry, results, dirs)
    finally:
        registry.close()
        # Images and stores take gigabytes at full scale; the logs stay for reading.
        shutil.rmtree(run_dir / "registry" / "storage", ignore_errors=True)
        scratch.remove(run_dir / "state")

    context = [
        f"Run {stamp}: scale `{args.scale}`, {args.runs} run(s) per cell, median (min-max) wall seconds "
        "of the whole build including the push.",
        "",
        *machine(args.work),
        f"- kiln: `{kiln}` ({version(['git', '-C', str(REPO), 'describe', '--always', '--dirty'])})",
        f"- {version(['buildah', '--version'])}, storage `{driver}`, `bud --isolation chroot --layers` + `push`",
        f"- registry: {version(['docker-registry', '--version'])} on loopback behind a byte-counting proxy",
        f"- command: `benches/run {shlex.join(argv)}`",
    ]
    text = render(results, scenarios, variants, args.runs, context, notes)
    out = args.out or args.work / f"results-{stamp}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(results.as_json(), indent=1))
    print(text)
    print(f"results written to {out}; logs in {run_dir / 'logs'}", file=sys.stderr)
    return 1 if results.failed() else 0
