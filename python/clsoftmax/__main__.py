"""python -m clsoftmax demo | devices | version"""

import sys

import numpy as np

import clsoftmax


def _ref_softmax(x, dim, log=False):
    x = x.astype(np.float64)
    m = x.max(axis=dim, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=dim, keepdims=True)
    return (x - m) - np.log(s) if log else e / s


def demo():
    ctx = clsoftmax._context()
    print("clsoftmax %s on %s (%s family); library %s" % (clsoftmax.__version__, ctx.device_name,
                                                          ctx.family, clsoftmax.library_path()))
    ok = True
    x = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], np.float32)
    for name, log in (("softmax", False), ("log_softmax", True)):
        y = getattr(clsoftmax, name)(x, dim=-1)
        ref = _ref_softmax(x, -1, log)
        err = float(np.max(np.abs(y - ref) / np.maximum(np.abs(ref), 1e-30)))
        ok = ok and err <= 4e-6
        print("%-12s %s  reference %s  rel. error %.1e" % (name, np.array2string(y[0], precision=6),
                                                           np.array2string(ref[0], precision=6), err))
    rng = np.random.default_rng(64080)
    logits = (rng.random((64, 80)) * 8 - 4).astype(np.float32)
    target = np.arange(64, dtype=np.int64)
    loss = float(clsoftmax.cross_entropy(logits, target))
    lse = np.log(np.exp(logits.astype(np.float64)).sum(axis=1))
    ref = float(np.mean(lse - logits.astype(np.float64)[np.arange(64), target]))
    err = abs(loss - ref) / abs(ref)
    ok = ok and err <= 4e-6
    print("cross_entropy batch 64, 80 classes, mean: %.7f  reference %.7f  rel. error %.1e"
          % (loss, ref, err))
    print("All results match the double-precision reference." if ok else "Results differ.")
    return 0 if ok else 1


def main(argv):
    cmd = argv[1] if len(argv) > 1 else "demo"
    if cmd == "demo":
        return demo()
    if cmd == "devices":
        for d in clsoftmax.devices():
            print("%s  %-40s %s, %s family%s" % (d["spec"], d["name"], d["platform"], d["family"],
                                                  "  (default)" if d["default"] else ""))
        return 0
    if cmd == "version":
        print(clsoftmax.__version__)
        return 0
    print("usage: python -m clsoftmax [demo | devices | version]", file=sys.stderr)
    return 2


sys.exit(main(sys.argv))
