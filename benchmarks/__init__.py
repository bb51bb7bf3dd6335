"""The measurements behind ``benchmarks/RESULTS.md``: scripts run from the repository root (``python -m
benchmarks.results``), built on the library's ``uniformer.benchmarks`` (``uniformer benchmark model`` is the
user's command). They hold what is an experiment rather than a library feature: glibc allocator settings, the
resident-memory and profiler-event measurements, the peers, the bf16 agreement study."""
