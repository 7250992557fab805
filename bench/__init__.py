"""Benchmarks for execstream: first output, throughput, memory and an output flood.

Run with ``python -m bench``; figures land in ``bench/results/``.
"""
