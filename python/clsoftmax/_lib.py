"""The C library through ctypes: finding it, its structs and signatures."""

import ctypes
import ctypes.util
import glob
import os

MAX_RANK = 8

# clsm_dtype
FLOAT32, FLOAT16, BFLOAT16, FLOAT64, INT64, INT32, UINT8 = range(7)
DTYPE_NAMES = {FLOAT32: "float32", FLOAT16: "float16", BFLOAT16: "bfloat16", FLOAT64: "float64",
               INT64: "int64", INT32: "int32", UINT8: "uint8"}
SAFE = 1  # CLSM_SAFE
REDUCTIONS = {"mean": 0, "sum": 1, "none": 2}
CE_OPTIONS_VERSION = 2
FAMILY_CPU, FAMILY_GPU = 0, 1


class Tensor(ctypes.Structure):
    _fields_ = [("mem", ctypes.c_void_p), ("offset", ctypes.c_uint64), ("dtype", ctypes.c_int),
                ("rank", ctypes.c_int), ("shape", ctypes.c_int64 * MAX_RANK),
                ("strides", ctypes.c_int64 * MAX_RANK)]


class CEOptions(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("reduction", ctypes.c_int),
                ("ignore_index", ctypes.c_int64), ("label_smoothing", ctypes.c_double),
                ("weight", ctypes.POINTER(Tensor)), ("z_loss", ctypes.c_double),
                ("softcap", ctypes.c_double), ("grad", ctypes.POINTER(Tensor)),
                ("grad_scale", ctypes.POINTER(Tensor)), ("lse", ctypes.POINTER(Tensor)),
                ("total_weight", ctypes.POINTER(Tensor)), ("check", ctypes.c_void_p)]


ATTN_OPTIONS_VERSION = 1
HEAD_DIM_AUTO = 1000


class AttnOptions(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("flags", ctypes.c_uint), ("scale", ctypes.c_double),
                ("mask", ctypes.POINTER(Tensor)), ("causal", ctypes.c_int),
                ("offset", ctypes.c_int64), ("alibi_max_bias", ctypes.c_double),
                ("alibi_slopes", ctypes.POINTER(Tensor)), ("sinks", ctypes.POINTER(Tensor)),
                ("head_dim", ctypes.c_int), ("lse", ctypes.POINTER(Tensor)),
                ("dsinks", ctypes.POINTER(Tensor))]


class AttnArrays(ctypes.Structure):
    _fields_ = [("mask", ctypes.c_void_p), ("mask_dtype", ctypes.c_int), ("mask_rank", ctypes.c_int),
                ("mask_shape", ctypes.POINTER(ctypes.c_int64)),
                ("alibi_slopes", ctypes.c_void_p), ("sinks", ctypes.c_void_p),
                ("sinks_dtype", ctypes.c_int), ("lse", ctypes.c_void_p), ("dsinks", ctypes.c_void_p)]


class DeviceInfo(ctypes.Structure):
    _fields_ = [("platform", ctypes.c_uint), ("device", ctypes.c_uint),
                ("platform_id", ctypes.c_void_p), ("device_id", ctypes.c_void_p),
                ("type", ctypes.c_uint64), ("family", ctypes.c_int), ("is_default", ctypes.c_int),
                ("name", ctypes.c_char * 256), ("platform_name", ctypes.c_char * 256)]


class Shard(ctypes.Structure):
    _fields_ = [("first", ctypes.c_int64), ("classes", ctypes.c_int64)]


SHARD_STATS = 5  # CLSM_SHARD_STATS


def library_path():
    """Where the library is taken from: $CLSM_LIBRARY, then a libclsoftmax.so*
    beside this package, then the system's loader."""
    env = os.environ.get("CLSM_LIBRARY")
    if env:
        return env
    here = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "libclsoftmax.so*")))
    if here:
        return here[0]
    return ctypes.util.find_library("clsoftmax") or "libclsoftmax.so.0"


def _load():
    path = library_path()
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(
            "clsoftmax: cannot load the C library (%s): %s. Set CLSM_LIBRARY to the path of "
            "libclsoftmax.so, or install the library where the loader finds it." % (path, e))
    P, I, U, S, V = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, None
    I64P = ctypes.POINTER(ctypes.c_int64)
    TP = ctypes.POINTER(Tensor)
    sig = {
        "clsm_version_string": (ctypes.c_char_p, []),
        "clsm_status_name": (ctypes.c_char_p, [I]),
        "clsm_status_string": (ctypes.c_char_p, [I]),
        "clsm_context_create": (I, [ctypes.POINTER(P), ctypes.c_char_p, ctypes.c_char_p, S]),
        "clsm_context_adopt": (I, [ctypes.POINTER(P), P, ctypes.c_char_p, S]),
        "clsm_context_release": (I, [P, ctypes.c_char_p, S]),
        "clsm_context_destroy": (V, [P]),
        "clsm_context_error": (S, [P, ctypes.c_char_p, S]),
        "clsm_context_queue": (P, [P]),
        "clsm_context_cl_context": (P, [P]),
        "clsm_context_device_name": (ctypes.c_char_p, [P]),
        "clsm_context_family": (I, [P]),
        "clsm_finish": (I, [P]),
        "clsm_list_devices": (I, [ctypes.POINTER(DeviceInfo), S, ctypes.POINTER(S),
                                  ctypes.c_char_p, S]),
        "clsm_softmax_host": (I, [P, I, I, I64P, I, U, P, P]),
        "clsm_log_softmax_host": (I, [P, I, I, I64P, I, U, P, P]),
        "clsm_softmax_backward_host": (I, [P, I, I, I64P, I, U, P, P, P]),
        "clsm_log_softmax_backward_host": (I, [P, I, I, I64P, I, U, P, P, P]),
        "clsm_cross_entropy_host": (I, [P, I, I, I64P, P, I, P, ctypes.POINTER(CEOptions), P, P,
                                        P, P, ctypes.POINTER(ctypes.c_float),
                                        ctypes.POINTER(ctypes.c_float)]),
        "clsm_attn_heads": (I, [I, I64P, I, I, I64P]),
        "clsm_cross_entropy_partial_host": (I, [P, I, I, I64P, P, I, P, ctypes.POINTER(Shard),
                                                ctypes.POINTER(CEOptions), P, P]),
        "clsm_cross_entropy_finish_host": (I, [P, I, I, I64P, P, I, P, ctypes.POINTER(Shard),
                                               ctypes.POINTER(CEOptions), P, P, P, P, P,
                                               ctypes.POINTER(ctypes.c_float),
                                               ctypes.POINTER(ctypes.c_float)]),
        "clsm_shard_merge": (I, [I, I, ctypes.c_int64, P, P]),
        "clsm_softmax_ex_host": (I, [P, I, I, I64P, I, ctypes.POINTER(AttnOptions),
                                     ctypes.POINTER(AttnArrays), P, P]),
        "clsm_log_softmax_ex_host": (I, [P, I, I, I64P, I, ctypes.POINTER(AttnOptions),
                                         ctypes.POINTER(AttnArrays), P, P]),
        "clsm_softmax_backward_ex_host": (I, [P, I, I, I64P, I, ctypes.POINTER(AttnOptions),
                                              ctypes.POINTER(AttnArrays), P, P, P]),
        "clsm_log_softmax_backward_ex_host": (I, [P, I, I, I64P, I, ctypes.POINTER(AttnOptions),
                                                  ctypes.POINTER(AttnArrays), P, P, P]),
        "clsm_softmax": (I, [P, TP, TP, I, U, U, P, ctypes.POINTER(P)]),
        "clsm_log_softmax": (I, [P, TP, TP, I, U, U, P, ctypes.POINTER(P)]),
        "clsm_softmax_backward": (I, [P, TP, TP, TP, I, U, U, P, ctypes.POINTER(P)]),
        "clsm_log_softmax_backward": (I, [P, TP, TP, TP, I, U, U, P, ctypes.POINTER(P)]),
        "clsm_cross_entropy": (I, [P, TP, TP, TP, ctypes.POINTER(CEOptions), U, P,
                                   ctypes.POINTER(P)]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    return lib, path


lib, path = _load()
