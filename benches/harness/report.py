"""The markdown report: the comparison table, the physical limits, the machine and the command."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from .measure import Spread
from .results import Results
from .scenarios import Scenario


def _seconds(spread: Spread | None, runs: int) -> str:
    if spread is None:
        return "-"
    if runs == 1:
        return f"{spread.median:.2f}"
    return f"{spread.median:.2f} ({spread.low:.2f}-{spread.high:.2f})"


def _ratio(top: float | None, bottom: float | None) -> str:
    if top is None or bottom is None or bottom <= 0:
        return "-"
    return f"{top / bottom:.2f}"


def _median(spread: Spread | None, digits: int = 0) -> str:
    return "-" if spread is None else f"{spread.median:.{digits}f}"


def comparison(results: Results, scenarios: list[Scenario], variants: list[str], runs: int) -> list[str]:
    """One row per scenario and variant: wall times, ratios, limit, CPU, peak RSS, uploads."""
    builders = results.builders
    peers = [b for b in builders if b != "kiln"]
    header = (
        ["scenario", "variant", *[f"{b} s" for b in builders], *[f"kiln/{p}" for p in peers],
         "limit s", "kiln/limit", f"CPU s {' / '.join(builders)}", f"peak RSS MiB {' / '.join(builders)}",
         f"uploaded MB {' / '.join(builders)}"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scenario in scenarios:
        limits = results.limits.get(scenario.id)
        for variant in (v for v in variants if v in scenario.variants):
            cells = {b: results.cell(scenario.id, variant, b) for b in builders}
            walls = {b: cells[b].wall() for b in builders}
            medians = {b: (walls[b].median if walls[b] else None) for b in builders}
            limit = limits.of(variant, scenario.push_only) if limits else None
            row = [scenario.id, variant]
            row += ["failed" if cells[b].error else _seconds(walls[b], runs) for b in builders]
            row += [_ratio(medians["kiln"], medians[p]) for p in peers]
            row += ["-" if limit is None else f"{limit:.2f}", _ratio(medians["kiln"], limit)]
            row.append(" / ".join(_median(cells[b].cpu(), 2) for b in builders))
            row.append(" / ".join(_median(cells[b].rss_mib()) for b in builders))
            row.append(" / ".join(_median(cells[b].uploaded_mb(), 1) for b in builders))
            lines.append("| " + " | ".join(row) + " |")
    return lines


def limits_table(results: Results, scenarios: list[Scenario]) -> list[str]:
    """The floors each scenario's limit is made of, with throughputs."""
    header = [
        "scenario", "context MB", "read+blake3 s", "new layers MB", "sha256 s", "gzip -6 s",
        "zstd -3 -T0 s", "upload MB", "upload s", "changed: gzip -6 s / upload s",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scenario in scenarios:
        if scenario.id in results.limit_errors:
            lines.append(f"| {scenario.id} | failed: {results.limit_errors[scenario.id].splitlines()[0]} |")
            continue
        limits = results.limits.get(scenario.id)
        if limits is None:
            continue
        changed = "-"
        if limits.changed_gzip and limits.changed_upload:
            changed = f"{limits.changed_gzip.seconds:.2f} / {limits.changed_upload.seconds:.2f}"
        lines.append(
            "| " + " | ".join([
                scenario.id,
                f"{limits.context.bytes / 1e6:.1f}",
                f"{limits.context.seconds:.2f} ({limits.context.rate():.0f} MB/s)",
                f"{limits.layers.bytes / 1e6:.1f}",
                f"{limits.layers.seconds:.2f} ({limits.layers.rate():.0f} MB/s)",
                f"{limits.gzip.seconds:.2f} ({limits.gzip.rate():.0f} MB/s)",
                f"{limits.zstd.seconds:.2f} ({limits.zstd.rate():.0f} MB/s)",
                f"{limits.upload.bytes / 1e6:.1f}",
                f"{limits.upload.seconds:.2f} ({limits.upload.rate():.0f} MB/s)",
                changed,
            ]) + " |"
        )
    return lines


def _capture(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def machine(work: Path) -> list[str]:
    """CPU model and count, memory, the disk the corpora and stores live on, kernel."""
    cpu = {}
    for line in _capture(["lscpu"]).splitlines():
        key, _, value = line.partition(":")
        cpu[key.strip()] = value.strip()
    memory = next(
        (line.split()[1] for line in _capture(["free", "-g"]).splitlines() if line.startswith("Mem:")), "?"
    )
    disk = _capture(["df", "-h", "--output=source,fstype,size,avail", str(work)]).splitlines()
    return [
        f"- CPU: {cpu.get('Model name', '?')}, {cpu.get('CPU(s)', '?')} CPUs",
        f"- memory: {memory} GiB; kernel {platform.release()}",
        f"- disk under `{work}`: {disk[-1] if disk else '?'}",
    ]


def render(
    results: Results, scenarios: list[Scenario], variants: list[str], runs: int, context: list[str], notes: list[str]
) -> str:
    """The whole report."""
    lines = ["## Results", "", *context, "", *comparison(results, scenarios, variants, runs), ""]
    lines += ["Physical limits (same run, same bytes):", "", *limits_table(results, scenarios), ""]
    for scenario in scenarios:
        lines += [f"- {scenario.id}: {scenario.title}"]
        lines += [f"  - {note}" for note in scenario.notes]
    lines += [f"- {note}" for note in notes]
    failures = [(key, cell.error) for key, cell in results.cells.items() if cell.error]
    if failures:
        lines += ["", "Failures:", ""]
        lines += [f"- {s} {v} {b}: {error.splitlines()[0]}" for (s, v, b), error in failures]
    return "\n".join(lines) + "\n"
