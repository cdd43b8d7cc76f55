"""The Python package's overhead on a small call: clsoftmax.softmax on a
64x80 float32 array against the C host-array call (clsm_softmax_host
through ctypes, arguments prepared once), interleaved, same context.
Run: CLSM_LIBRARY=build/libclsoftmax.so PYTHONPATH=python python3 bench/python_overhead.py"""

import ctypes
import statistics
import time

import numpy as np

import clsoftmax
from clsoftmax import _lib


def main(rounds=30, calls=200):
    x = np.random.default_rng(1).uniform(-4, 4, (64, 80)).astype(np.float32)
    y = np.empty_like(x)
    ctx = clsoftmax._context()
    shape = (ctypes.c_int64 * 2)(64, 80)
    xp, yp = ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(y.ctypes.data)
    f = _lib.lib.clsm_softmax_host

    def c_call():
        if f(ctx._ctx, _lib.FLOAT32, 2, shape, -1, 0, xp, yp):
            raise RuntimeError("clsm_softmax_host failed")

    def py_call():
        clsoftmax.softmax(x, -1)

    for fn in (c_call, py_call):  # warm: build, buffers
        fn()
    per = {c_call: [], py_call: []}
    for _ in range(rounds):
        for fn in (c_call, py_call):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            per[fn].append((time.perf_counter() - t0) / calls * 1e6)
    c, p = statistics.median(per[c_call]), statistics.median(per[py_call])
    print("64x80 float32 softmax on %s: C host call %.1f us, clsoftmax.softmax %.1f us, ratio %.2f"
          % (ctx.device_name, c, p, p / c))


if __name__ == "__main__":
    main()
