"""
Benchmarks, run from the repository root.

``python -m benchmarks WORKLOAD`` compares aioqwenimage with the official ``dashscope`` SDK against
the emulator (see ``docs/benchmarks.md``); ``python -m benchmarks.<name>`` runs a standalone one,
such as ``emulator_throughput``.
"""
