"""`make bench`: run every benchmark and print one table."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from bench import hashing, memory
from bench.common import Row

SUITES = [hashing.run, memory.run]


def main() -> int:
    rows: list[Row] = []
    for suite in SUITES:
        rows.extend(suite())
    table = Table(title="capsule benchmarks")
    for column in ("measure", "baseline", "capsule", "ratio", "target", "met"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.measure,
            row.baseline,
            row.capsule,
            f"{row.ratio:.2f}",
            row.target,
            {True: "yes", False: "NO", None: "-"}[row.ok],
        )
    Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
