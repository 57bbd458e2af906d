"""What the service image carries from the repository, counted without Docker.

Reads the Dockerfile's ``COPY`` instructions that take files from the build
context (not ``--from`` another stage), applies the context's exclusions
(``.dockerignore``'s patterns for caches and key files) and counts the files
and bytes those sources hold. The wheel built from them is what lands in the
image's site-packages, so this is the project's share of the image.

    .venv/bin/python -m benchmarks.image_contents [--root DIR]

``--root`` measures another checkout, e.g. ``git archive main | tar -x -C DIR``
for the figure before a change.
"""

from __future__ import annotations

import argparse
import fnmatch
import shlex
from collections.abc import Iterator
from pathlib import Path

#: Patterns .dockerignore excludes inside the allowed folders.
_EXCLUDED = ("__pycache__", "*.pyc", "*.pyo", ".env", "*.pem", "*.key")


def context_sources(dockerfile: Path) -> list[str]:
    """The context paths of every ``COPY`` without ``--from`` (its last word is the target)."""
    sources: list[str] = []
    for line in dockerfile.read_text("utf-8").splitlines():
        if not line.upper().startswith("COPY "):
            continue
        words = shlex.split(line, comments=True)
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources.extend(args[:-1])
    return sources


def files(root: Path, sources: list[str]) -> Iterator[Path]:
    """Every file under the sources, minus the excluded patterns."""
    for source in sources:
        path = root / source
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for candidate in candidates:
            parts = candidate.relative_to(root).parts
            if candidate.is_file() and not any(
                fnmatch.fnmatch(part, pattern) for part in parts for pattern in _EXCLUDED
            ):
                yield candidate


def main() -> None:
    """Print the sources, the file count and the size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    sources = context_sources(args.root / "Dockerfile")
    found = list(files(args.root, sources))
    size = sum(path.stat().st_size for path in found)
    python = [path for path in found if path.suffix == ".py"]
    print(f"COPY sources: {' '.join(sources)}")
    print(f"files: {len(found)} ({len(python)} Python), {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
