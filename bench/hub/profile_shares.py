"""Inclusive shares of a py-spy raw profile (``connect_storm.py --profile``): for each pattern,
the share of samples whose stack has a frame matching it (each sample counted once).

    python bench/hub/profile_shares.py /tmp/prof/limpet-2000.txt on_subscribe presence_touch
    python bench/hub/profile_shares.py FILE --top 30      # the functions with most samples
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def read(path: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw format: ``frame;frame;...;frame COUNT`` per line."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("patterns", nargs="*")
    parser.add_argument("--top", type=int, default=0, help="functions by inclusive samples")
    args = parser.parse_args()
    stacks = read(args.file)
    total = sum(n for _, n in stacks) or 1
    print(f"{total} samples")
    for pattern in args.patterns:
        hits = sum(n for frames, n in stacks if any(pattern in f for f in frames))
        print(f"{100 * hits / total:5.1f} %  {pattern}")
    if args.top:
        inclusive: Counter[str] = Counter()
        own: Counter[str] = Counter()
        for frames, n in stacks:
            for f in set(frames):
                inclusive[f] += n
            own[frames[-1]] += n
        for f, n in inclusive.most_common(args.top):
            print(f"{100 * n / total:5.1f} % (own {100 * own[f] / total:4.1f} %)  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
