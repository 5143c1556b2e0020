"""Executors: where a sweep's job graph runs (`icl_bench.core.jobs`), each a plugin like a task."""
