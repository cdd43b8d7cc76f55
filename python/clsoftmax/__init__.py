"""clsoftmax: softmax, log-softmax and cross-entropy on any OpenCL device.

Host arrays (numpy in, numpy out)::

    import numpy as np, clsoftmax
    y = clsoftmax.softmax(np.random.rand(64, 80).astype(np.float32), dim=-1)
    loss, grad = clsoftmax.cross_entropy(logits, target, return_grad=True)

Device arrays (pyopencl.array.Array) go through a Context, usually one that
adopts the caller's queue: ``ctx = clsoftmax.Context.adopt(queue)``;
``ctx.softmax(a)`` enqueues and returns without waiting, the operation's
event added to the output's ``events``; ``ctx.finish()`` waits and raises
the calls' device-side errors.

The C library is found through $CLSM_LIBRARY, then beside this package,
then the system's loader (``clsoftmax.library_path()`` says which).
"""

import ctypes
import threading

import numpy as np

from . import _lib
from ._lib import library_path

__all__ = ["Error", "Context", "softmax", "log_softmax", "softmax_backward",
           "log_softmax_backward", "attention_softmax", "attention_softmax_backward",
           "cross_entropy", "devices", "library_path", "__version__"]

__version__ = _lib.lib.clsm_version_string().decode()

_C = _lib.lib


class Error(RuntimeError):
    """A failure the C library reported: `status` is its name
    (e.g. "CLSM_ERR_TARGET_OUT_OF_RANGE"), `detail` the library's detail."""

    def __init__(self, status, detail):
        self.status = status
        self.detail = detail
        super().__init__("%s: %s" % (status, detail) if detail else status)


def _status_name(st):
    return _C.clsm_status_name(st).decode()


_NP_DTYPES = {np.dtype(np.float32): _lib.FLOAT32, np.dtype(np.float16): _lib.FLOAT16,
              np.dtype(np.float64): _lib.FLOAT64, np.dtype(np.int64): _lib.INT64,
              np.dtype(np.int32): _lib.INT32, np.dtype(np.uint8): _lib.UINT8,
              np.dtype(np.bool_): _lib.UINT8}
_FLOATS = (_lib.FLOAT32, _lib.FLOAT16, _lib.BFLOAT16, _lib.FLOAT64)


def _dtype_of(a, dtype=None, floats_only=True, what="x"):
    """The clsm_dtype of array `a`; dtype="bfloat16" takes uint16 storage as bfloat16."""
    if dtype is not None and str(dtype) == "bfloat16":
        if a.dtype != np.uint16:
            raise TypeError("%s: dtype='bfloat16' needs uint16 storage, not %s" % (what, a.dtype))
        return _lib.BFLOAT16
    if dtype is not None and np.dtype(dtype) != a.dtype:
        raise TypeError("%s is %s but dtype=%s was given" % (what, a.dtype, dtype))
    d = _NP_DTYPES.get(a.dtype)
    if d is None or (floats_only and d not in _FLOATS):
        raise TypeError("%s: dtype %s is not supported (float32, float64, float16, or uint16 "
                        "with dtype='bfloat16')" % (what, a.dtype))
    return d


def _norm_dim(dim, rank):
    r = rank if rank else 1
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError("dim must be an int, not %s" % type(dim).__name__)
    if not -r <= dim < r:
        raise ValueError("dim %d is out of range for rank %d (valid: %d..%d)" % (dim, rank, -r, r - 1))
    return int(dim)


def _shape(a):
    if a.ndim > _lib.MAX_RANK:
        raise ValueError("rank %d is above %d" % (a.ndim, _lib.MAX_RANK))
    return (ctypes.c_int64 * max(a.ndim, 1))(*a.shape)


def _ptr(a):
    return ctypes.c_void_p(a.ctypes.data) if a is not None else None


def _is_device_array(a):
    return hasattr(a, "base_data") and hasattr(a, "queue")


class Context:
    """A clsoftmax context: a device, a queue and the built kernels.

    Context(device=None) opens a device by spec ("cpu", "gpu", "P:D", part of
    a name; default $CLSM_DEVICE, else the first GPU, else the first device).
    Context.adopt(queue) works on a pyopencl.CommandQueue's queue (in order),
    so that pyopencl arrays of that context can be passed."""

    def __init__(self, device=None, _handle=None):
        self._lock = threading.Lock()
        if _handle is not None:
            self._ctx = _handle
            return
        h = ctypes.c_void_p()
        detail = ctypes.create_string_buffer(512)
        st = _C.clsm_context_create(ctypes.byref(h), device.encode() if device else None, detail,
                                    512)
        if st:
            raise Error(_status_name(st), detail.value.decode(errors="replace"))
        self._ctx = h

    @classmethod
    def adopt(cls, queue):
        """A context on a pyopencl.CommandQueue (retained; released with the context)."""
        h = ctypes.c_void_p()
        detail = ctypes.create_string_buffer(512)
        st = _C.clsm_context_adopt(ctypes.byref(h), ctypes.c_void_p(queue.int_ptr), detail, 512)
        if st:
            raise Error(_status_name(st), detail.value.decode(errors="replace"))
        ctx = cls(_handle=h)
        ctx._pyqueue = queue
        return ctx

    @property
    def device_name(self):
        return _C.clsm_context_device_name(self._ctx).decode(errors="replace")

    @property
    def family(self):
        return "cpu" if _C.clsm_context_family(self._ctx) == _lib.FAMILY_CPU else "gpu"

    @property
    def queue(self):
        """The context's queue as a pyopencl.CommandQueue (needs pyopencl)."""
        q = getattr(self, "_pyqueue", None)
        if q is None:
            import pyopencl as cl
            q = cl.CommandQueue.from_int_ptr(_C.clsm_context_queue(self._ctx), retain=True)
            self._pyqueue = q
        return q

    def close(self):
        """Waits for the context's work and frees it; raises Error for a
        device-side failure nobody asked about yet."""
        if self._ctx:
            detail = ctypes.create_string_buffer(1024)
            st = _C.clsm_context_release(self._ctx, detail, 1024)
            self._ctx = None
            if st:
                raise Error(_status_name(st), detail.value.decode(errors="replace"))

    def __del__(self):
        if getattr(self, "_ctx", None):
            _C.clsm_context_destroy(self._ctx)
            self._ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fail(self, st):
        buf = ctypes.create_string_buffer(1024)
        _C.clsm_context_error(self._ctx, buf, 1024)
        raise Error(_status_name(st), buf.value.decode(errors="replace"))

    def finish(self):
        """Waits for this thread's calls; raises Error for a failed one
        (a class index out of range)."""
        st = _C.clsm_finish(self._ctx)
        if st:
            self._fail(st)

    # ---- row operations

    def _rowop(self, name, ins, dim, safe, out, dtype, wait_for):
        if _is_device_array(ins[0]):
            return self._rowop_device(name, ins, dim, safe, out, wait_for)
        ins = [np.asarray(a) for a in ins]
        d = _dtype_of(ins[0], dtype, what="y" if len(ins) == 2 else "x")
        for i, a in enumerate(ins[1:], 1):
            if a.dtype != ins[0].dtype or a.shape != ins[0].shape:
                raise ValueError("dy must have y's dtype and shape: %s %s and %s %s"
                                 % (ins[0].dtype, ins[0].shape, a.dtype, a.shape))
        dim = _norm_dim(dim, ins[0].ndim)
        cins = [np.ascontiguousarray(a) for a in ins]
        if out is None:
            res = np.empty(ins[0].shape, ins[0].dtype)
        else:
            if not isinstance(out, np.ndarray) or out.shape != ins[0].shape or \
                    out.dtype != ins[0].dtype or not out.flags.c_contiguous or \
                    not out.flags.writeable:
                raise ValueError("out must be a writeable C-contiguous %s array of shape %s"
                                 % (ins[0].dtype, ins[0].shape))
            res = out
        f = getattr(_C, "clsm_%s_host" % name)
        with self._lock:
            st = f(self._ctx, d, ins[0].ndim, _shape(ins[0]), dim, _lib.SAFE if safe else 0,
                   *[_ptr(a) for a in cins], _ptr(res))
            if st:
                self._fail(st)
        return res

    def softmax(self, x, dim=-1, *, safe=False, out=None, dtype=None, wait_for=None):
        """softmax along dim (numpy or pyopencl arrays)."""
        return self._rowop("softmax", [x], dim, safe, out, dtype, wait_for)

    def log_softmax(self, x, dim=-1, *, safe=False, out=None, dtype=None, wait_for=None):
        return self._rowop("log_softmax", [x], dim, safe, out, dtype, wait_for)

    def softmax_backward(self, y, dy, dim=-1, *, safe=False, out=None, dtype=None, wait_for=None):
        """dx = y * (dy - sum(dy * y)) along dim, y the softmax's output."""
        return self._rowop("softmax_backward", [y, dy], dim, safe, out, dtype, wait_for)

    def log_softmax_backward(self, y, dy, dim=-1, *, safe=False, out=None, dtype=None,
                             wait_for=None):
        """dx = dy - exp(y) * sum(dy) along dim, y the log-softmax's output."""
        return self._rowop("log_softmax_backward", [y, dy], dim, safe, out, dtype, wait_for)

    # ---- attention softmax (host arrays)

    def _attn_options(self, scale, causal, offset, alibi, head_dim, safe):
        o = _lib.AttnOptions()
        o.version = _lib.ATTN_OPTIONS_VERSION
        o.flags = _lib.SAFE if safe else 0
        o.scale = float(scale)
        o.causal = 1 if causal else 0
        o.offset = int(offset)
        o.alibi_max_bias = float(alibi) if alibi is not None else 0.0
        o.head_dim = _lib.HEAD_DIM_AUTO if head_dim is None else int(head_dim)
        return o

    def attention_softmax(self, x, dim=-1, *, scale=1.0, mask=None, causal=False, offset=0,
                          alibi=None, alibi_slopes=None, sinks=None, head_dim=None, safe=False,
                          log=False, return_lse=False, dtype=None):
        """softmax (log=True: log-softmax) of scale * x + mask along dim (the key
        axis), with causal masking past key i + offset (i the query index, the
        axis before dim), ALiBi (alibi=max_bias, or alibi_slopes: one float32
        a head), and sinks (one logit a head, float32 or x's dtype) in the
        normaliser. mask: float32 / float16 added, or bool / uint8 keeping its
        nonzero entries, broadcast to x. Heads are along head_dim (default:
        the axis before the query axis). return_lse adds each row's
        log-sum-exp (float32; float64 for float64 x)."""
        x = np.asarray(x)
        d = _dtype_of(x, dtype)
        dim = _norm_dim(dim, x.ndim)
        o = self._attn_options(scale, causal, offset, alibi, head_dim, safe)
        ar = _lib.AttnArrays()
        keep = []
        if mask is not None:
            m = np.ascontiguousarray(mask)
            if m.dtype == np.bool_:
                m = m.view(np.uint8)
            md = {np.dtype(np.float32): _lib.FLOAT32, np.dtype(np.float16): _lib.FLOAT16,
                  np.dtype(np.uint8): _lib.UINT8}.get(m.dtype)
            if md is None:
                raise TypeError("mask: dtype %s is not float32, float16, bool or uint8" % m.dtype)
            ms = _shape(m)
            keep += [m, ms]
            ar.mask, ar.mask_dtype, ar.mask_rank = m.ctypes.data, md, m.ndim
            ar.mask_shape = ctypes.cast(ms, ctypes.POINTER(ctypes.c_int64))
        acc = np.float64 if d == _lib.FLOAT64 else np.float32
        heads = self._heads(x, dim, head_dim)
        for name, a in (("alibi_slopes", alibi_slopes), ("sinks", sinks)):
            if a is None:
                continue
            a = np.ascontiguousarray(a)
            if name == "alibi_slopes" and a.dtype != np.float32:
                raise TypeError("alibi_slopes must be float32, not %s" % a.dtype)
            if a.shape != (heads,):
                raise ValueError("%s has shape %s but x of shape %s has %d heads"
                                 % (name, a.shape, x.shape, heads))
            keep.append(a)
            if name == "sinks":
                # float32, or x's dtype (uint16 storage for bfloat16 x)
                sd = _dtype_of(a, dtype if a.dtype == x.dtype else None, what="sinks")
                ar.sinks, ar.sinks_dtype = a.ctypes.data, sd
            else:
                ar.alibi_slopes = a.ctypes.data
        lse = None
        if return_lse:
            k = dim % x.ndim if x.ndim else 0
            lse = np.empty(x.shape[:k] + x.shape[k + 1:], acc)
            ar.lse = lse.ctypes.data
        cx = np.ascontiguousarray(x)
        res = np.empty(x.shape, x.dtype)
        f = _C.clsm_log_softmax_ex_host if log else _C.clsm_softmax_ex_host
        with self._lock:
            st = f(self._ctx, d, x.ndim, _shape(x), dim, ctypes.byref(o), ctypes.byref(ar),
                   _ptr(cx), _ptr(res))
            if st:
                self._fail(st)
        return (res, lse) if return_lse else res

    @staticmethod
    def _heads(x, dim, head_dim):
        """H as the library counts it (1 for a dim or head_dim it refuses: the
        call itself then raises)."""
        h = ctypes.c_int64(1)
        hd = _lib.HEAD_DIM_AUTO if head_dim is None else int(head_dim)
        if _C.clsm_attn_heads(x.ndim, _shape(x), dim, hd, ctypes.byref(h)):
            return 1
        return h.value

    def attention_softmax_backward(self, y, dy, dim=-1, *, scale=1.0, head_dim=None, safe=False,
                                   log=False, return_dsinks=False, dtype=None):
        """d loss / d x of attention_softmax from its output y and dy:
        scale * y * (dy - sum(dy * y)) (log: scale * (dy - exp(y) sum(dy))),
        masked entries (y 0, or -inf for log) excluded; return_dsinks adds
        d loss / d sinks (one a head)."""
        y, dy = np.asarray(y), np.asarray(dy)
        d = _dtype_of(y, dtype, what="y")
        if dy.dtype != y.dtype or dy.shape != y.shape:
            raise ValueError("dy must have y's dtype and shape: %s %s and %s %s"
                             % (y.dtype, y.shape, dy.dtype, dy.shape))
        dim = _norm_dim(dim, y.ndim)
        o = self._attn_options(scale, False, 0, None, head_dim, safe)
        ar = _lib.AttnArrays()
        ds = None
        if return_dsinks:
            ds = np.empty(self._heads(y, dim, head_dim), np.float64 if d == _lib.FLOAT64 else np.float32)
            ar.dsinks = ds.ctypes.data
        cy, cdy = np.ascontiguousarray(y), np.ascontiguousarray(dy)
        res = np.empty(y.shape, y.dtype)
        f = _C.clsm_log_softmax_backward_ex_host if log else _C.clsm_softmax_backward_ex_host
        with self._lock:
            st = f(self._ctx, d, y.ndim, _shape(y), dim, ctypes.byref(o), ctypes.byref(ar),
                   _ptr(cy), _ptr(cdy), _ptr(res))
            if st:
                self._fail(st)
        return (res, ds) if return_dsinks else res

    # ---- device arrays

    def _tensor(self, a, dtype=None, what="x"):
        d = _dtype_of(a, dtype, floats_only=False, what=what)
        t = _lib.Tensor()
        isz = a.dtype.itemsize
        if a.offset % isz or any(s % isz for s in a.strides):
            raise ValueError("%s: offset and strides must be multiples of the element size" % what)
        if any(s < 0 for s in a.strides):
            raise ValueError("%s: negative strides are not supported" % what)
        t.mem = a.base_data.int_ptr
        t.offset = a.offset // isz
        t.dtype = d
        t.rank = a.ndim
        for k in range(a.ndim):
            t.shape[k] = a.shape[k]
            t.strides[k] = a.strides[k] // isz
        return t

    def _waits(self, arrays, wait_for):
        evs = []
        for a in arrays:
            if a is not None:
                evs.extend(getattr(a, "events", []) or [])
        evs.extend(wait_for or [])
        arr = (ctypes.c_void_p * max(len(evs), 1))(*[e.int_ptr for e in evs])
        return len(evs), (arr if evs else None)

    def _event(self, ev, out):
        import pyopencl as cl
        e = cl.Event.from_int_ptr(ev.value, retain=False)
        out.add_event(e)
        return e

    def _rowop_device(self, name, ins, dim, safe, out, wait_for):
        x = ins[0]
        dim = _norm_dim(dim, x.ndim)
        if out is None:
            import pyopencl.array as cla
            out = cla.empty(x.queue, x.shape, x.dtype)
        ts = [self._tensor(a, what=n) for a, n in zip(ins, ["x", "dy"] if len(ins) == 1 else
                                                           ["y", "dy"])]
        to = self._tensor(out, what="out")
        n, waits = self._waits(list(ins) + [out], wait_for)
        ev = ctypes.c_void_p()
        f = getattr(_C, "clsm_%s" % name)
        with self._lock:
            st = f(self._ctx, *[ctypes.byref(t) for t in ts], ctypes.byref(to), dim,
                   _lib.SAFE if safe else 0, n, waits, ctypes.byref(ev))
            if st:
                self._fail(st)
        self._event(ev, out)
        return out

    # ---- cross-entropy

    def _ce_options(self, reduction, ignore_index, label_smoothing, z_loss, softcap):
        if reduction not in _lib.REDUCTIONS:
            raise ValueError("reduction must be 'mean', 'sum' or 'none', not %r" % (reduction,))
        o = _lib.CEOptions()
        o.version = _lib.CE_OPTIONS_VERSION
        o.reduction = _lib.REDUCTIONS[reduction]
        o.ignore_index = int(ignore_index)
        o.label_smoothing = float(label_smoothing)
        o.z_loss = float(z_loss)
        o.softcap = float(softcap) if softcap is not None else 0.0
        return o

    def cross_entropy(self, logits, target, *, weight=None, ignore_index=-100, reduction="mean",
                      label_smoothing=0.0, z_loss=0.0, softcap=None, return_grad=False,
                      return_lse=False, grad_scale=None, dtype=None, loss=None, grad=None,
                      wait_for=None):
        """Cross-entropy of logits (N, C, ...) or (C,) against class indices
        (int64, int32, uint8) or probabilities (the logits' shape).

        Host arrays: returns the loss (0-d for mean/sum, the positions'
        shape for none), or (loss, grad[, lse]) / (loss, lse) when asked.
        Device arrays: `loss` (optional) and `grad` (optional, may be the
        logits themselves) are pyopencl arrays; returns the loss array."""
        opt = self._ce_options(reduction, ignore_index, label_smoothing, z_loss, softcap)
        if _is_device_array(logits):
            return self._ce_device(logits, target, opt, weight, grad_scale, loss, grad, wait_for)
        x = np.asarray(logits)
        t = np.asarray(target)
        d = _dtype_of(x, dtype, what="logits")
        if x.ndim < 1:
            raise ValueError("logits must have rank 1..8 (rank 0 given)")
        pos = x.shape[:1] + x.shape[2:] if x.ndim >= 2 else ()
        prob = t.shape == x.shape and ((t.dtype == x.dtype and t.dtype.kind == "f") or
                                       (d == _lib.BFLOAT16 and t.dtype == np.uint16))
        if prob:
            td = d
        else:
            td = _dtype_of(t, floats_only=False, what="target")
            if td in _FLOATS:
                raise ValueError("probability targets must have the logits' shape %s and dtype "
                                 "%s (target: %s %s)" % (x.shape, x.dtype, t.shape, t.dtype))
            if t.shape != pos:
                raise ValueError("target has shape %s: logits of shape %s need %s" %
                                 (t.shape, x.shape, pos))
        if prob and ignore_index >= 0:
            raise ValueError("ignore_index %d: probability targets need a negative ignore_index"
                             % ignore_index)
        C = x.shape[1] if x.ndim >= 2 else x.shape[0]
        w = None
        if weight is not None:
            w = np.ascontiguousarray(weight)
            if w.dtype != x.dtype or w.shape != (C,):
                raise ValueError("weight must be a (%d,) %s array" % (C, x.dtype))
        reduced = reduction != "none"
        gs = None
        if grad_scale is not None:
            gs = np.ascontiguousarray(grad_scale, dtype=x.dtype)
            if gs.shape != (() if reduced else pos):
                raise ValueError("grad_scale must have shape %s" % ((() if reduced else pos),))
            if not return_grad:
                raise ValueError("grad_scale scales the gradient: it needs return_grad=True")
        cx, ct = np.ascontiguousarray(x), np.ascontiguousarray(t)
        lo = np.zeros(() if reduced else pos, x.dtype)
        gr = np.empty(x.shape, x.dtype) if return_grad else None
        ls = np.empty(pos, np.float32) if return_lse else None
        with self._lock:
            st = _C.clsm_cross_entropy_host(
                self._ctx, d, x.ndim, _shape(x), _ptr(cx), td, _ptr(ct), ctypes.byref(opt),
                _ptr(w), _ptr(lo), _ptr(gr), _ptr(gs),
                ls.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) if ls is not None else None,
                None)
            if st:
                self._fail(st)
        res = (lo,) + ((gr,) if return_grad else ()) + ((ls,) if return_lse else ())
        return res if len(res) > 1 else lo

    # ---- a sharded class axis (docs/sharded.md)

    def _ce_shard_args(self, logits, target, first, classes, weight, dtype):
        x = np.ascontiguousarray(logits)
        t = np.ascontiguousarray(target)
        d = _dtype_of(x, dtype, what="logits")
        if x.ndim < 1:
            raise ValueError("logits must have rank 1..8 (rank 0 given)")
        prob = t.shape == x.shape and t.dtype == x.dtype and t.dtype.kind == "f"
        td = d if prob else _dtype_of(t, floats_only=False, what="target")
        w = None
        if weight is not None:
            w = np.ascontiguousarray(weight)
            if w.dtype != x.dtype or w.shape != (classes,):
                raise ValueError("weight must be a (%d,) %s array: every class of the axis"
                                 % (classes, x.dtype))
        pos = x.shape[:1] + x.shape[2:] if x.ndim >= 2 else ()
        acc = np.float64 if x.dtype == np.float64 else np.float32
        return x, t, d, td, w, pos, acc, _lib.Shard(int(first), int(classes))

    def cross_entropy_partial(self, logits, target, first, classes, *, weight=None,
                              ignore_index=-100, reduction="mean", label_smoothing=0.0,
                              z_loss=0.0, softcap=None, dtype=None):
        """Phase 1 on one shard: `logits` holds classes [first, first + C_r)
        of `classes`; `target` the class indices of the whole axis, or the
        shard's columns of the probabilities; `weight` every class's. Returns
        the statistics: the positions' shape then SHARD_STATS values."""
        opt = self._ce_options(reduction, ignore_index, label_smoothing, z_loss, softcap)
        x, t, d, td, w, pos, acc, sh = self._ce_shard_args(logits, target, first, classes,
                                                           weight, dtype)
        stats = np.empty(pos + (_lib.SHARD_STATS,), acc)
        with self._lock:
            st = _C.clsm_cross_entropy_partial_host(self._ctx, d, x.ndim, _shape(x), _ptr(x), td,
                                                    _ptr(t), ctypes.byref(sh), ctypes.byref(opt),
                                                    _ptr(w), _ptr(stats))
            if st:
                self._fail(st)
        return stats

    def cross_entropy_finish(self, logits, target, stats, first, classes, *, weight=None,
                             ignore_index=-100, reduction="mean", label_smoothing=0.0,
                             z_loss=0.0, softcap=None, return_grad=False, grad_scale=None,
                             dtype=None):
        """Phase 3 on one shard, from the merged statistics: the loss (the
        same on every shard), or (loss, grad) with the shard's columns of
        the gradient."""
        opt = self._ce_options(reduction, ignore_index, label_smoothing, z_loss, softcap)
        x, t, d, td, w, pos, acc, sh = self._ce_shard_args(logits, target, first, classes,
                                                           weight, dtype)
        s = np.ascontiguousarray(stats, dtype=acc)
        if s.shape != pos + (_lib.SHARD_STATS,):
            raise ValueError("stats must have shape %s" % ((pos + (_lib.SHARD_STATS,)),))
        reduced = reduction != "none"
        gs = None
        if grad_scale is not None:
            if not return_grad:
                raise ValueError("grad_scale scales the gradient: it needs return_grad=True")
            gs = np.ascontiguousarray(grad_scale, dtype=x.dtype)
        lo = np.zeros(() if reduced else pos, x.dtype)
        gr = np.empty(x.shape, x.dtype) if return_grad else None
        with self._lock:
            st = _C.clsm_cross_entropy_finish_host(self._ctx, d, x.ndim, _shape(x), _ptr(x), td,
                                                   _ptr(t), ctypes.byref(sh), ctypes.byref(opt),
                                                   _ptr(w), _ptr(s), _ptr(lo), _ptr(gr), _ptr(gs),
                                                   None, None)
            if st:
                self._fail(st)
        return (lo, gr) if return_grad else lo

    def _ce_device(self, logits, target, opt, weight, grad_scale, loss, grad, wait_for):
        import pyopencl.array as cla
        x = logits
        reduced = opt.reduction != _lib.REDUCTIONS["none"]
        pos = x.shape[:1] + x.shape[2:] if x.ndim >= 2 else ()
        if loss is None:
            loss = cla.empty(x.queue, () if reduced else pos, x.dtype)
        tx, tt, tl = self._tensor(x, what="logits"), self._tensor(target, what="target"), \
            self._tensor(loss, what="loss")
        keep = []
        if weight is not None:
            tw = self._tensor(weight, what="weight")
            keep.append(tw)
            opt.weight = ctypes.pointer(tw)
        if grad is not None:
            tg = self._tensor(grad, what="grad")
            keep.append(tg)
            opt.grad = ctypes.pointer(tg)
        if grad_scale is not None:
            tgs = self._tensor(grad_scale, what="grad_scale")
            keep.append(tgs)
            opt.grad_scale = ctypes.pointer(tgs)
        n, waits = self._waits([x, target, loss, grad, weight, grad_scale], wait_for)
        ev = ctypes.c_void_p()
        with self._lock:
            st = _C.clsm_cross_entropy(self._ctx, ctypes.byref(tx), ctypes.byref(tt),
                                       ctypes.byref(tl), ctypes.byref(opt), n, waits,
                                       ctypes.byref(ev))
            if st:
                self._fail(st)
        e = self._event(ev, loss)
        if grad is not None:
            grad.add_event(e)
        return loss


_default = None
_default_lock = threading.Lock()


def _context():
    global _default
    with _default_lock:
        if _default is None:
            _default = Context()
        return _default


def softmax(x, dim=-1, *, safe=False, out=None, dtype=None, device=None):
    """softmax of a numpy array along dim; `device` a spec for a context of
    its own, else the process's default context ($CLSM_DEVICE)."""
    ctx = Context(device) if device else _context()
    return ctx.softmax(x, dim, safe=safe, out=out, dtype=dtype)


def log_softmax(x, dim=-1, *, safe=False, out=None, dtype=None, device=None):
    ctx = Context(device) if device else _context()
    return ctx.log_softmax(x, dim, safe=safe, out=out, dtype=dtype)


def softmax_backward(y, dy, dim=-1, *, safe=False, out=None, dtype=None, device=None):
    ctx = Context(device) if device else _context()
    return ctx.softmax_backward(y, dy, dim, safe=safe, out=out, dtype=dtype)


def log_softmax_backward(y, dy, dim=-1, *, safe=False, out=None, dtype=None, device=None):
    ctx = Context(device) if device else _context()
    return ctx.log_softmax_backward(y, dy, dim, safe=safe, out=out, dtype=dtype)


def attention_softmax(x, dim=-1, *, device=None, **kw):
    """See Context.attention_softmax (host arrays)."""
    ctx = Context(device) if device else _context()
    return ctx.attention_softmax(x, dim, **kw)


def attention_softmax_backward(y, dy, dim=-1, *, device=None, **kw):
    """See Context.attention_softmax_backward (host arrays)."""
    ctx = Context(device) if device else _context()
    return ctx.attention_softmax_backward(y, dy, dim, **kw)


def cross_entropy(logits, target, *, device=None, **kw):
    """See Context.cross_entropy (host arrays)."""
    ctx = Context(device) if device else _context()
    return ctx.cross_entropy(logits, target, **kw)


def shard_merge(stats):
    """Merges the statistics of several shards (a list of arrays of one
    shape, the last dim the record: cross-entropy's SHARD_STATS values, or
    a sharded softmax's 2): the (max, sum) pair, then sums."""
    stats = [np.ascontiguousarray(s) for s in stats]
    if not stats:
        raise ValueError("shard_merge needs at least one array")
    out = stats[0].copy()
    dt = _lib.FLOAT64 if out.dtype == np.float64 else _lib.FLOAT32
    if out.dtype not in (np.float32, np.float64) or out.ndim < 1:
        raise ValueError("statistics are float32 or float64 records")
    k = out.shape[-1]
    for s in stats[1:]:
        if s.shape != out.shape or s.dtype != out.dtype:
            raise ValueError("every shard's statistics need shape %s and dtype %s"
                             % (out.shape, out.dtype))
        st = _C.clsm_shard_merge(dt, k, out.size // k, _ptr(s), _ptr(out))
        if st:
            raise Error(_status_name(st), "clsm_shard_merge")
    return out


def devices():
    """What OpenCL offers: a list of dicts (spec, name, platform, type, family, default)."""
    n = ctypes.c_size_t()
    detail = ctypes.create_string_buffer(512)
    st = _C.clsm_list_devices(None, 0, ctypes.byref(n), detail, 512)
    if st:
        raise Error(_status_name(st), detail.value.decode(errors="replace"))
    infos = (_lib.DeviceInfo * max(n.value, 1))()
    st = _C.clsm_list_devices(infos, n.value, ctypes.byref(n), detail, 512)
    if st:
        raise Error(_status_name(st), detail.value.decode(errors="replace"))
    out = []
    for i in infos[:n.value]:
        out.append({"spec": "%d:%d" % (i.platform, i.device), "name": i.name.decode(errors="replace"),
                    "platform": i.platform_name.decode(errors="replace"),
                    "type": "cpu" if i.type & 2 else "gpu" if i.type & 4 else "other",
                    "family": "cpu" if i.family == _lib.FAMILY_CPU else "gpu",
                    "default": bool(i.is_default)})
    return out
