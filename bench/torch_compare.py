#!/usr/bin/env python3
"""PyTorch on the same shapes as `clsoftmax bench`, for the GPU comparison.

Runs torch.softmax, torch.log_softmax, their backward kernels,
torch.nn.functional.cross_entropy and cross-entropy forward + backward
(autograd; PyTorch has no fused in-place form) on the bench's shapes and
dtypes, with the same byte accounting: every input read once, the output
written once (cross-entropy: the logits once; forward + backward: the logits
and the gradient once). Times are CUDA-event medians of at least 20 runs after
3 warm-ups; a device-to-device copy of the same bytes is timed in the same
loop. Usage: python3 torch_compare.py [--quick] [--only SHAPE,...] [--json FILE]
"""
import json
import sys

import torch
import torch.nn.functional as F

CASES = [  # shape, dim, quick, half
    ((8192, 4096), -1, True, True), ((4096, 32000), -1, False, True),
    ((65536, 128), -1, True, False), ((1024, 262144), -1, False, False),
    ((128, 1000), -1, False, False), ((64, 80), -1, True, False),
    ((1, 1000), -1, False, False), ((1, 1048576), -1, True, False),
    ((64, 512, 512), 0, False, False), ((64, 512, 512), 1, True, False),
    ((64, 512, 512), 2, False, False),
]
OPS = ["softmax", "log-softmax", "softmax-backward", "log-softmax-backward",
       "cross-entropy", "cross-entropy-fwd+bwd"]
DTYPES = [("float32", torch.float32), ("float16", torch.float16), ("bfloat16", torch.bfloat16)]


def timed(fn, copy, reps):
    """Median device ms of fn and of copy, interleaved, and fn's median host ms."""
    import time
    for _ in range(3):
        fn()
        copy()
    torch.cuda.synchronize()
    top, tcp, thost = [], [], []
    for _ in range(reps):
        a, b, c = (torch.cuda.Event(enable_timing=True) for _ in range(3))
        a.record()
        fn()
        b.record()
        copy()
        c.record()
        torch.cuda.synchronize()
        top.append(a.elapsed_time(b))
        tcp.append(b.elapsed_time(c))
        h0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        thost.append(1e3 * (time.perf_counter() - h0))
    med = lambda v: sorted(v)[len(v) // 2]
    return med(top), med(tcp), med(thost)


def main():
    quick = "--quick" in sys.argv
    jpath = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(dev)
    print(f"device: {name}, torch {torch.__version__}")
    print(f"{'op':<22}{'dtype':<9}{'shape':<15}{'dim':>4}{'median_ms':>11}{'host_ms':>9}"
          f"{'Gelem/s':>9}{'GB/s':>9}{'copyGB/s':>9}{'ratio':>7}")
    rows = []
    g = torch.Generator(device=dev).manual_seed(1234)
    for shape, dim, q, half in CASES:
        if (quick and not q) or (only and "x".join(map(str, shape)) not in only):
            continue
        n = 1
        for s in shape:
            n *= s
        for dname, dt in DTYPES:
            if dt != torch.float32 and not half:
                continue
            x = (torch.rand(shape, generator=g, device=dev) * 16 - 8).to(dt)
            dy = (torch.rand(shape, generator=g, device=dev) * 2 - 1).to(dt)
            ax = dim % len(shape)
            ys = torch.softmax(x, ax)
            yl = torch.log_softmax(x, ax)
            cax = 1
            ncls = shape[cax]
            tshape = shape[:1] + shape[2:]
            tgt = torch.randint(0, ncls, tshape, generator=g, device=dev)
            es = x.element_size()
            for op in OPS:
                ce = op.startswith("cross")
                if ce and not (len(shape) == 2 or ax == 1):
                    continue
                if quick and dt != torch.float32 and op not in ("softmax", "log-softmax"):
                    continue
                if op == "softmax":
                    fn = lambda: torch.softmax(x, ax)
                    moved = 2 * n * es
                elif op == "log-softmax":
                    fn = lambda: torch.log_softmax(x, ax)
                    moved = 2 * n * es
                elif op == "softmax-backward":
                    fn = lambda: torch._softmax_backward_data(dy, ys, ax, dt)
                    moved = 3 * n * es
                elif op == "log-softmax-backward":
                    fn = lambda: torch._log_softmax_backward_data(dy, yl, ax, dt)
                    moved = 3 * n * es
                elif op == "cross-entropy":
                    fn = lambda: F.cross_entropy(x, tgt)
                    moved = n * es
                else:
                    xg = x.detach().clone().requires_grad_(True)
                    fn = lambda: torch.autograd.grad(F.cross_entropy(xg, tgt), xg)
                    moved = 2 * n * es
                src = torch.empty(moved // 2, dtype=torch.uint8, device=dev)
                dst = torch.empty_like(src)
                copy = lambda: dst.copy_(src)
                reps = 20 if n >= 1 << 24 else 50
                ms, cms, hms = timed(fn, copy, reps)
                gbps = moved / (ms * 1e-3) * 1e-9
                cgbps = moved / (cms * 1e-3) * 1e-9
                sh = "x".join(map(str, shape))
                print(f"{op:<22}{dname:<9}{sh:<15}{dim:>4}{ms:>11.4f}{hms:>9.4f}"
                      f"{n / (ms * 1e-3) * 1e-9:>9.3f}{gbps:>9.1f}{cgbps:>9.1f}{gbps / cgbps:>7.2f}",
                      flush=True)
                rows.append(dict(op=op, dtype=dname, shape=list(shape), dim=dim, median_ms=ms,
                                 host_ms=hms, gbps=gbps, copy_gbps=cgbps))
            del x, dy, ys, yl
            torch.cuda.empty_cache()
    if jpath:
        with open(jpath, "w") as f:
            json.dump(dict(device=name, torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
