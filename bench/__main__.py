"""`make bench`: run every benchmark and print one table."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from bench import (
    cluster,
    fidelity,
    hashing,
    hostiledata,
    memory,
    models,
    moo,
    numerics,
    openflow,
    overhead,
    records,
    rootinput,
    runtime,
    scores,
    search,
    searchquality,
    slurm,
    trained,
)
from bench.common import Row

SUITES = {
    "hashing": hashing.run,
    "memory": memory.run,
    "runtime": runtime.run,
    "overhead": overhead.run,
    "search": search.run,
    "cluster": cluster.run,
    "fidelity": fidelity.run,
    "numerics": numerics.run,
    "models": models.run,
    "records": records.run,
    "moo": moo.run,
    "openflow": openflow.run,
    "searchquality": searchquality.run,
    "slurm": slurm.run,
    "rootinput": rootinput.run,
    "hostiledata": hostiledata.run,
    "scores": scores.run,
    "trained": trained.run,
}


def main(argv: list[str]) -> int:
    """Every suite, or only those named: `python -m bench runtime`."""
    if {"-h", "--help"} & set(argv):
        print("usage: python -m bench [SUITE ...]  (no suite: every one; one table of rows)")
        print(f"suites: {', '.join(SUITES)}")
        return 0
    unknown = sorted(set(argv) - set(SUITES))
    if unknown:
        print(f"unknown suites {unknown}; known: {sorted(SUITES)}", file=sys.stderr)
        return 2
    rows: list[Row] = []
    for name, suite in SUITES.items():
        if not argv or name in argv:
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
    sys.exit(main(sys.argv[1:]))
