"""What the runs measured, kept per scenario, variant and builder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .limits import Limits
from .measure import Spread, Usage


@dataclass(frozen=True)
class Sample:
    """One measured run: its cost and the bytes it pushed through the counting proxy."""

    usage: Usage
    uploaded: int


@dataclass
class Cell:
    """Every repetition of one builder on one scenario variant; `error` if one failed."""

    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    def wall(self) -> Spread | None:
        return Spread.of([s.usage.wall for s in self.samples])

    def cpu(self) -> Spread | None:
        return Spread.of([s.usage.cpu for s in self.samples])

    def rss_mib(self) -> Spread | None:
        return Spread.of([s.usage.rss_kib / 1024 for s in self.samples])

    def uploaded_mb(self) -> Spread | None:
        return Spread.of([s.uploaded / 1e6 for s in self.samples])


@dataclass
class Results:
    """The whole run: cells keyed by (scenario, variant, builder), limits by scenario."""

    builders: list[str]
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)
    limits: dict[str, Limits] = field(default_factory=dict)
    limit_errors: dict[str, str] = field(default_factory=dict)

    def cell(self, scenario: str, variant: str, builder: str) -> Cell:
        return self.cells.setdefault((scenario, variant, builder), Cell())

    def failed(self) -> bool:
        return any(cell.error for cell in self.cells.values()) or bool(self.limit_errors)

    def as_json(self) -> dict:
        return {
            "builders": self.builders,
            "cells": [
                {"scenario": s, "variant": v, "builder": b, "error": c.error,
                 "samples": [asdict(sample) for sample in c.samples]}
                for (s, v, b), c in self.cells.items()
            ],
            "limits": {s: asdict(limits) for s, limits in self.limits.items()},
            "limit_errors": self.limit_errors,
        }
