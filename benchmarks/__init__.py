"""Benchmarks of bnn_keras, each runnable as `python -m benchmarks.<name>`.

They are not tests: timings depend on the machine, so they print a table and
write their numbers to a JSON file instead of asserting (`publish`). See
`docs/benchmarks.md` for what each measures and its results.
"""

import json

__all__ = ["publish"]


def publish(result: dict, table: str, path: str) -> None:
    """Writes `result` as JSON to `path` and prints `table` and where it went."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(table)
    print(f"wrote {path}")
