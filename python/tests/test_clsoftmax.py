"""The Python package against a float64 numpy reference: every operation and
option, every dtype, strided and transposed views, pyopencl arrays with
offsets and in place, chained events, and the error paths."""

import os
import re

import numpy as np
import pytest

import clsoftmax

RTOL = {np.float32: 4e-6, np.float64: 1e-12, np.float16: 2e-3, "bfloat16": 1.6e-2}


def ref_softmax(x, dim, log=False, safe=False):
    x = np.asarray(x, np.float64)
    m = x.max(axis=dim, keepdims=True)
    if safe:
        m = np.where(np.isneginf(m), 0.0, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.exp(x - m)
        s = e.sum(axis=dim, keepdims=True)
        if log:
            return (x - m) - np.log(s)
        return np.where(s == 0, 0.0, e / s) if safe else e / s


def to_bf16(a):
    """float32 -> bfloat16 bits (round to nearest even), and back as float64."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def from_bf16(b):
    return (b.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def close(got, ref, rtol, log=False, atol=1e-30):
    """Within rtol of the reference (log-softmax: of max(1, |ref|)), atol for
    results in a storage type's subnormal range; specials exactly."""
    got = np.asarray(got, np.float64)
    if log:  # log-softmax: absolute error scaled by the row's magnitude
        tol = rtol * np.maximum(1.0, np.abs(ref))
    else:
        tol = rtol * np.abs(ref) + atol
    same_special = (np.isnan(got) & np.isnan(ref)) | (got == ref)
    with np.errstate(invalid="ignore"):  # -inf - -inf where both are -inf
        return bool(np.all(same_special | (np.abs(got - ref) <= tol)))


def rand(shape, seed, dtype=np.float32):
    r = np.random.default_rng(seed)
    x = r.uniform(-4, 4, size=shape)
    return x.astype(dtype)


def test_version_matches_pyproject():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(here, "pyproject.toml")).read()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == clsoftmax.__version__


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape,dim", [((64, 80), -1), ((64, 80), 0), ((3, 5, 7), 1), ((7,), 0),
                                       ((2, 3, 300), -1)])
def test_rowops(dtype, log, shape, dim):
    x = rand(shape, 7 + len(shape))
    if dtype == "bfloat16":
        xb = to_bf16(x)
        y = (clsoftmax.log_softmax if log else clsoftmax.softmax)(xb, dim, dtype="bfloat16")
        assert y.dtype == np.uint16
        got, ref = from_bf16(y), ref_softmax(from_bf16(xb), dim, log)
    else:
        xd = x.astype(dtype)
        y = (clsoftmax.log_softmax if log else clsoftmax.softmax)(xd, dim)
        assert y.dtype == np.dtype(dtype) and y.shape == shape
        got, ref = y, ref_softmax(xd, dim, log)
    # float16 subnormals (below 6.1e-5) are spaced 2^-24 apart
    assert close(got, ref, RTOL[dtype], log, atol=2.0 ** -24 if dtype == np.float16 else 1e-30)


def test_special_values_and_safe():
    x = np.array([[1, -np.inf, 2, -np.inf], [-np.inf] * 4, [1, np.inf, 2, 3], [1, np.nan, 2, 3]],
                 np.float32)
    y = clsoftmax.softmax(x)
    assert close(y, ref_softmax(x, -1), 4e-6)
    assert np.all(np.isnan(y[1])) and np.all(np.isnan(y[2])) and np.all(np.isnan(y[3]))
    ys = clsoftmax.softmax(x, safe=True)
    assert np.all(ys[1] == 0)
    ls = clsoftmax.log_softmax(x, safe=True)
    assert np.all(np.isneginf(ls[1]))


def test_strided_and_transposed_views():
    base = rand((6, 40), 3)
    for view in (base[:, ::2], base.T, base[1:5, 3:30]):
        for dim in (0, 1):
            assert close(clsoftmax.softmax(view, dim), ref_softmax(view, dim), 4e-6)


def test_out_and_in_place():
    x = rand((5, 9), 4)
    out = np.empty_like(x)
    r = clsoftmax.softmax(x, out=out)
    assert r is out and close(out, ref_softmax(x, -1), 4e-6)
    y = x.copy()
    clsoftmax.log_softmax(y, out=y)
    assert close(y, ref_softmax(x, -1, log=True), 4e-6, log=True)
    with pytest.raises(ValueError):
        clsoftmax.softmax(x, out=np.empty((5, 9), np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_backward(dtype, log):
    x = rand((8, 33), 5, dtype)
    dy = rand((8, 33), 6, dtype)
    y = (clsoftmax.log_softmax if log else clsoftmax.softmax)(x, 1)
    dx = (clsoftmax.log_softmax_backward if log else clsoftmax.softmax_backward)(y, dy, 1)
    yd, dyd = y.astype(np.float64), dy.astype(np.float64)
    if log:
        ref = dyd - np.exp(yd) * dyd.sum(axis=1, keepdims=True)
    else:
        ref = yd * (dyd - (dyd * yd).sum(axis=1, keepdims=True))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.all(np.abs(dx - ref) <= tol * (1 + np.abs(ref)))


def ref_ce(x, t, reduction="mean", weight=None, ignore_index=-100, eps=0.0, z=0.0, cap=None):
    x = np.asarray(x, np.float64)
    if cap:
        x = cap * np.tanh(x / cap)
    if x.ndim == 1:
        x, t = x[None], np.asarray(t)[None]
    x = np.moveaxis(x, 1, -1)  # positions..., C
    C = x.shape[-1]
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    m = x.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]
    logp = x - lse[..., None]
    t = np.asarray(t)
    ign = t == ignore_index
    tc = np.where(ign, 0, t)
    wt = np.where(ign, 0.0, w[tc])
    nll = -np.take_along_axis(logp, tc[..., None], -1)[..., 0]
    smooth = -(logp * w).sum(axis=-1) / C
    l = np.where(ign, 0.0, (1 - eps) * wt * nll + eps * smooth)
    zl = np.where(ign, 0.0, z * lse ** 2)
    if reduction == "none":
        return l + zl
    if reduction == "sum":
        return l.sum() + zl.sum()
    return l.sum() / wt.sum() + (zl.sum() / (~ign).sum() if z else 0.0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("tdtype", [np.int64, np.int32, np.uint8])
def test_cross_entropy(reduction, tdtype):
    x = rand((64, 80), 11)
    t = np.random.default_rng(12).integers(0, 80, 64).astype(tdtype)
    loss = clsoftmax.cross_entropy(x, t, reduction=reduction)
    ref = ref_ce(x, t, reduction)
    assert loss.shape == (() if reduction != "none" else (64,))
    assert np.all(np.abs(loss - ref) <= 4e-6 * np.abs(ref) + 1e-6)


def test_cross_entropy_options_grad_lse():
    x = rand((16, 10, 3), 13)  # class axis 1, positions (16, 3)
    t = np.random.default_rng(14).integers(0, 10, (16, 3)).astype(np.int64)
    t[0, 0] = -100
    w = np.random.default_rng(15).uniform(0.5, 2, 10).astype(np.float32)
    loss, grad, lse = clsoftmax.cross_entropy(x, t, weight=w, label_smoothing=0.1, z_loss=1e-3,
                                              return_grad=True, return_lse=True)
    ref = ref_ce(x, t, "mean", w, eps=0.1, z=1e-3)
    assert abs(float(loss) - ref) <= 1e-5 * abs(ref)
    xl = np.moveaxis(x.astype(np.float64), 1, -1)
    ref_lse = np.log(np.exp(xl).sum(axis=-1))
    assert np.all(np.abs(lse - ref_lse) <= 4e-6 * np.abs(ref_lse) + 1e-6)
    # gradient by central differences of the double reference, a few entries
    h = 1e-4
    for idx in [(1, 2, 0), (5, 0, 2), (0, 0, 0), (15, 9, 1)]:
        xp, xm = x.astype(np.float64), x.astype(np.float64)
        xp[idx] += h
        xm[idx] -= h
        fd = (ref_ce(xp, t, "mean", w, eps=0.1, z=1e-3) - ref_ce(xm, t, "mean", w, eps=0.1, z=1e-3)) / (2 * h)
        assert abs(grad[idx] - fd) <= 1e-4 * (1 + abs(fd)), (idx, grad[idx], fd)
    assert np.all(grad[0, :, 0] == 0)  # the ignored position
    capped = clsoftmax.cross_entropy(x, t, softcap=3.0)
    assert abs(float(capped) - ref_ce(x, t, cap=3.0)) <= 1e-5 * abs(float(capped))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_sharded(reduction):
    # classes split 1 / 20 / 29 over three shards, merged in any order
    x = rand((16, 50), 21)
    t = np.random.default_rng(22).integers(0, 50, 16).astype(np.int64)
    t[3], t[4], t[5] = -100, 1, 20  # ignored, on shard boundaries
    w = np.random.default_rng(23).uniform(0.5, 2, 50).astype(np.float32)
    ctx = clsoftmax.Context()
    kw = dict(weight=w, label_smoothing=0.1, reduction=reduction)
    bounds = [0, 1, 21, 50]
    stats = [ctx.cross_entropy_partial(x[:, a:b], t, a, 50, **kw)
             for a, b in zip(bounds, bounds[1:])]
    assert stats[0].shape == (16, 5) and stats[0].dtype == np.float32
    merged = clsoftmax.shard_merge(stats[::-1])
    parts = [ctx.cross_entropy_finish(x[:, a:b], t, merged, a, 50, return_grad=True, **kw)
             for a, b in zip(bounds, bounds[1:])]
    loss = parts[0][0]
    grad = np.concatenate([g for _, g in parts], axis=1)
    for l, _ in parts:  # the same loss on every shard
        assert np.array_equal(l, loss)
    ref = ref_ce(x, t, reduction, w, eps=0.1)
    assert np.all(np.abs(loss - ref) <= 1e-5 * np.abs(ref) + 1e-6)
    l1, g1 = clsoftmax.cross_entropy(x, t, return_grad=True, **kw)
    assert np.all(np.abs(grad - g1) <= 4e-7 * np.abs(g1).max())
    with pytest.raises(ValueError):
        ctx.cross_entropy_partial(x[:, :1], t, 0, 50, weight=w[:1])  # weights of one shard
    with pytest.raises(clsoftmax.Error):
        ctx.cross_entropy_partial(x[:, :30], t, 30, 50)  # past the axis


def test_cross_entropy_probabilities_and_1d():
    x = rand((4, 6), 16)
    q = np.random.default_rng(17).dirichlet(np.ones(6), 4).astype(np.float32)
    loss = clsoftmax.cross_entropy(x, q)
    xd = x.astype(np.float64)
    logp = xd - np.log(np.exp(xd).sum(axis=1, keepdims=True))
    ref = float(np.mean(-(q * logp).sum(axis=1)))
    assert abs(float(loss) - ref) <= 4e-6 * abs(ref)
    l1 = clsoftmax.cross_entropy(x[0], np.array(2))
    assert abs(float(l1) - ref_ce(x[0], 2)) <= 4e-6 * abs(float(l1))


def test_errors():
    x = rand((4, 6), 18)
    with pytest.raises(ValueError):
        clsoftmax.softmax(x, dim=2)
    with pytest.raises(TypeError):
        clsoftmax.softmax(x.astype(np.int32))
    with pytest.raises(TypeError):
        clsoftmax.softmax(x, dtype="bfloat16")
    with pytest.raises(ValueError):
        clsoftmax.cross_entropy(x, np.zeros(4, np.int64), reduction="avg")
    with pytest.raises(ValueError):
        clsoftmax.cross_entropy(x, np.zeros(3, np.int64))
    t = np.array([0, 1, 6, 2], np.int64)  # 6 is outside [0, 6)
    with pytest.raises(clsoftmax.Error) as e:
        clsoftmax.cross_entropy(x, t)
    assert e.value.status == "CLSM_ERR_TARGET_OUT_OF_RANGE"
    assert "position 2" in e.value.detail and "6" in e.value.detail
    with pytest.raises(clsoftmax.Error) as e:
        clsoftmax.Context("no-such-device-anywhere")
    assert e.value.status == "CLSM_ERR_DEVICE_NOT_FOUND"


def test_devices():
    devs = clsoftmax.devices()
    assert devs and all(re.match(r"^\d+:\d+$", d["spec"]) for d in devs)
    assert sum(d["default"] for d in devs) == 1


@pytest.fixture(scope="module")
def dev():
    pytest.importorskip("pyopencl")
    import pyopencl.array as cla
    ctx = clsoftmax.Context()
    q = ctx.queue
    return ctx, q, cla


def test_device_arrays(dev):
    ctx, q, cla = dev
    x = rand((32, 50), 21)
    a = cla.to_device(q, x)
    y = ctx.softmax(a, dim=-1)
    assert y.events, "the output carries the operation's event"
    assert close(y.get(), ref_softmax(x, -1), 4e-6)
    # offset and strides: a sliced, transposed view of a bigger buffer
    big_host = rand((40, 60), 22)
    big = cla.to_device(q, big_host)
    view = big[5:37, 3:53]
    assert view.offset > 0 and view.strides[0] == 60 * 4
    out = cla.empty(q, view.shape, np.float32)
    ctx.log_softmax(view, dim=0, out=out)
    assert close(out.get(), ref_softmax(big_host[5:37, 3:53], 0, log=True), 4e-6, log=True)
    # in place, chained on the previous event (no finish in between)
    ctx.softmax(a, out=a)
    ctx.log_softmax(a, out=a)
    ref = ref_softmax(ref_softmax(x, -1), -1, log=True)
    assert close(a.get(), ref, 1e-5, log=True)
    ctx.finish()


def test_device_cross_entropy(dev):
    ctx, q, cla = dev
    x = rand((64, 80), 23)
    t = np.random.default_rng(24).integers(0, 80, 64).astype(np.int64)
    xa, ta = cla.to_device(q, x), cla.to_device(q, t)
    loss = ctx.cross_entropy(xa, ta, grad=xa)  # the gradient over the logits
    ref = ref_ce(x, t)
    assert abs(float(loss.get()) - ref) <= 4e-6 * abs(ref)
    xd = x.astype(np.float64)
    p = np.exp(xd - xd.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(64), t] -= 1
    assert np.all(np.abs(xa.get() - p / 64) <= 1e-6)
    bad = cla.to_device(q, np.full(64, 99, np.int64))
    ctx.cross_entropy(cla.to_device(q, x), bad)  # enqueues: the check is deferred
    with pytest.raises(clsoftmax.Error) as e:
        ctx.finish()
    assert e.value.status == "CLSM_ERR_TARGET_OUT_OF_RANGE"


def test_adopt_pyopencl_queue():
    cl = pytest.importorskip("pyopencl")
    import pyopencl.array as cla
    dev = cl.get_platforms()[0].get_devices()[0]
    cctx = cl.Context([dev])
    q = cl.CommandQueue(cctx)
    with clsoftmax.Context.adopt(q) as ctx:
        x = rand((16, 24), 31)
        a = cla.to_device(q, x)
        y = ctx.softmax(a)
        dx = ctx.softmax_backward(y, cla.to_device(q, np.ones_like(x)))  # waits on y's event
        assert close(y.get(), ref_softmax(x, -1), 4e-6)
        assert np.all(np.abs(dx.get()) <= 1e-6)  # dy = 1: y (1 - sum y) = 0
    # an out-of-order queue is refused
    ooo = cl.CommandQueue(cctx, properties=cl.command_queue_properties.OUT_OF_ORDER_EXEC_MODE_ENABLE)
    with pytest.raises(clsoftmax.Error) as e:
        clsoftmax.Context.adopt(ooo)
    assert e.value.status == "CLSM_ERR_INVALID_ARGUMENT"


# ---- attention softmax

def ref_attention(x, scale, mask=None, causal=False, offset=0, slopes=None, sinks=None,
                  log=False):
    """float64 reference of (B, H, Lq, Lk) scores; z in float32 as the spec
    computes it, one rounding an operation."""
    z = (np.float32(scale) * x.astype(np.float32)).astype(np.float32)
    if mask is not None and mask.dtype == np.bool_:
        z = np.where(mask, z, np.float32(-np.inf)).astype(np.float32)
    elif mask is not None:
        z = (z + mask.astype(np.float32)).astype(np.float32)
    lq, lk = x.shape[-2], x.shape[-1]
    i = np.arange(lq)[:, None]
    j = np.arange(lk)[None, :]
    if slopes is not None:
        dist = np.abs(i + offset - j).astype(np.float32)
        z = (z - (slopes.astype(np.float32)[None, :, None, None] * dist).astype(np.float32))
        z = z.astype(np.float32)
    z = z.astype(np.float64)
    if causal:
        z = np.where(j > i + offset, -np.inf, z)
    s = (np.full(x.shape[:2] + (1, 1), -np.inf) if sinks is None
         else np.asarray(sinks, np.float64)[None, :, None, None] * np.ones(x.shape[:1] + (1, 1, 1)))
    m = np.maximum(z.max(axis=-1, keepdims=True), s)
    tot = np.exp(z - m).sum(axis=-1, keepdims=True) + np.exp(s - m)
    lse = (m + np.log(tot))[..., 0]
    y = (z - m) - np.log(tot) if log else np.exp(z - m) / tot
    return y, lse


def alibi_slopes(max_bias, heads):
    n = 2 ** int(np.floor(np.log2(heads)))
    h = np.arange(heads)
    e = np.where(h < n, max_bias / n * (h + 1), max_bias / (2 * n) * (2 * (h - n) + 1))
    return (2.0 ** -e).astype(np.float32)


@pytest.mark.parametrize("log", [False, True])
def test_attention_softmax(log):
    rng = np.random.default_rng(19)
    x = rng.standard_normal((2, 4, 6, 40)).astype(np.float32) * 3
    mask = rng.random((1, 1, 6, 40)) < 0.85
    sinks = rng.standard_normal(4).astype(np.float32)
    y, lse = clsoftmax.attention_softmax(x, scale=0.5, mask=mask, causal=True, offset=34,
                                         alibi=8.0, sinks=sinks, log=log, return_lse=True)
    ry, rl = ref_attention(x, 0.5, mask, True, 34, alibi_slopes(8.0, 4), sinks, log)
    assert lse.dtype == np.float32 and lse.shape == (2, 4, 6)
    assert close(y, ry, 4e-6, log=log)
    assert close(lse, rl, 4e-6, log=True)
    # An additive float16 mask and given slopes.
    fm = np.where(rng.random((6, 40)) < 0.1, -np.inf, rng.standard_normal((6, 40))).astype(np.float16)
    slopes = rng.random(4).astype(np.float32)
    y = clsoftmax.attention_softmax(x, mask=fm, alibi_slopes=slopes, log=log)
    ry, _ = ref_attention(x, 1.0, fm, slopes=slopes, log=log)
    assert close(y, ry, 4e-6, log=log)


def test_attention_backward_and_errors():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 3, 5, 12)).astype(np.float32)
    sinks = rng.standard_normal(3).astype(np.float32)
    y = clsoftmax.attention_softmax(x, scale=0.25, causal=True, sinks=sinks)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, ds = clsoftmax.attention_softmax_backward(y, dy, scale=0.25, return_dsinks=True)
    yd, dyd = y.astype(np.float64), dy.astype(np.float64)
    acc = (np.where(yd == 0, 0, dyd * yd)).sum(-1, keepdims=True)
    assert np.allclose(dx, np.where(yd == 0, 0, 0.25 * yd * (dyd - acc)), rtol=1e-5, atol=1e-7)
    want = -((1 - yd.sum(-1)) * acc[..., 0]).sum(axis=(0, 2))
    assert ds.shape == (3,) and np.allclose(ds, want, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError):
        clsoftmax.attention_softmax(x, sinks=np.zeros(2, np.float32))
    with pytest.raises(clsoftmax.Error) as e:
        clsoftmax.attention_softmax(x, mask=np.ones((4, 12), np.float32))
    assert e.value.status == "CLSM_ERR_SHAPE_MISMATCH" and "does not broadcast" in e.value.detail
    with pytest.raises(clsoftmax.Error) as e:
        clsoftmax.attention_softmax(np.zeros(5, np.float32), causal=True)
    assert e.value.status == "CLSM_ERR_SHAPE_MISMATCH"
