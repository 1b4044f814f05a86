"""Benchmarks: `python -m tests.bench` (make bench); each module exposes `async def run()`."""
