"""Speed and memory measurements of mcu-lightning, printed as side-by-side ratios (``python -m benchmarks.<name>``).

Each benchmark measures the library's path and a plain baseline in the same process, interleaved (ABAB), after a
warm-up, and reports medians and their ratio; ``benchmarks.report`` turns the JSON files they write into
``docs/performance.md``.
"""
