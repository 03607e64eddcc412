"""Removing scratch trees safely: builders mount things (Kaniko's pod binds /dev and the
context; Buildah mounts overlays), always in private mount namespaces that die with them, but a
tree with something still mounted under it is never deleted: that would delete through the mount."""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import BenchError


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in the harness's mount namespace."""
    root = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return found


def remove(path: Path) -> None:
    """Deletes `path` unless something is mounted under it (then raises, naming the mounts)."""
    if not path.exists():
        return
    mounted = mounts_under(path)
    if mounted:
        raise BenchError(f"not removing {path}: still mounted there: {', '.join(mounted)}")
    shutil.rmtree(path, ignore_errors=True)
