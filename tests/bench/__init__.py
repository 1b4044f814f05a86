"""Benchmark suites: each module ``tests.bench.<name>`` exposes ``async def run() -> list[dict]``
with rows ``{"benchmark", "case", ...figures..., "ratio", "target"}``."""
