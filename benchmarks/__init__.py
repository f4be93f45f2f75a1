"""Benchmarks, not tests: speed and memory on this machine (`mrfnet bench`, `make bench`).

bench.py plans the measurements and writes the report (docs/benchmarks.md); each measurement
runs in a fresh process (worker.py; video.py for the video rows) so that its memory peak is its
own and process-wide levers can differ between measurements.
"""
