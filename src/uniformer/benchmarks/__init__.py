"""Throughput benchmarks behind ``uniformer benchmark <what>``; one module per measured subsystem."""
