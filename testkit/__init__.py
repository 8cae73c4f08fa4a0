"""Helpers the tests and the benchmarks share: llama.cpp's OpenAI-compatible server started on
loopback (`llama_server`) and a proxy that injects server faults on a schedule (`faultproxy`).

Not part of the product: neither is installed with valuescope. Tests find this folder through
pytest's `pythonpath`; benchmarks put the repository root on `sys.path`.
"""
