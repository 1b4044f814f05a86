"""Benchmarks: each module exposes ``async def run() -> list[dict]`` (rows: benchmark, case,
figures, ratio, target), measured against a baseline in the same run."""
