"""Benchmarks of bnn_keras, each runnable as `python -m benchmarks.<name>`.

They are not tests: timings depend on the machine, so they print a table and
write their numbers to a JSON file instead of asserting. `callback_overhead`
measures what the flip-flop and C2I callbacks cost per training step.
"""

__all__: list[str] = []
