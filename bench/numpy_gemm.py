#!/usr/bin/env python3
"""Peer figure for `./dsmoe bench kernels`: float32 GEMM GFLOP/s through numpy's BLAS on the
same training shapes, medians over repeats. Run with a python3 whose numpy uses OpenBLAS (pip's
numpy bundles it; Debian's python3-numpy falls back to the slow reference BLAS unless
libopenblas0 is installed):
    python3 bench/numpy_gemm.py [--repeats 7]
The Java code never needs Python; this only gives BENCHMARKS.md its reference column."""
import argparse, os, time
import numpy as np

SHAPES = [("A*B", 2048, 256, 1024), ("A*B", 2048, 1024, 256), ("A*B", 2048, 256, 8192),
          ("A*BT", 2048, 256, 1024), ("AT*B", 1024, 2048, 256), ("A*B", 2048, 2048, 2048)]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    print(f"numpy {np.__version__}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    try:
        from threadpoolctl import threadpool_info
        for i in threadpool_info():
            print(f"  {i.get('internal_api')} {i.get('version')} {i.get('architecture')} threads={i.get('num_threads')}")
    except ImportError:
        pass
    for form, m, k, n in SHAPES:
        a = rng.random((k, m) if form == "AT*B" else (m, k), dtype=np.float32)
        b = rng.random((n, k) if form == "A*BT" else (k, n), dtype=np.float32)
        f = {"A*B": lambda: a @ b, "A*BT": lambda: a @ b.T, "AT*B": lambda: a.T @ b}[form]
        for _ in range(3):
            f()
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        med = sorted(ts)[len(ts) // 2]
        print(f"| {form} {m}x{k}x{n} | {med*1e3:9.2f} ms | {2.0*m*n*k/med/1e9:7.1f} GFLOP/s |")

if __name__ == "__main__":
    main()
