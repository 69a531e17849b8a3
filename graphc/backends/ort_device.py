"""Device-resident feeds for onnxruntime: OrtValues, DLPack and CUDA-array-interface objects.

An `OnnxExecutable` or `OrtStepper` binds a feed that already lives on a device (an
`onnxruntime.OrtValue`, a CUDA `torch.Tensor`, a CuPy array, ...) to its IOBinding as it is,
without a copy. Such a feed is checked for its shape and dtype only: its values stay on the
device, so a declared integer range (labels) is not checked, and a dtype other than the declared
one is an error instead of a cast (a cast would be a copy).

How a feed is bound (the first that applies):

- `numpy.ndarray`, scalars, lists, CPU tensors: the host path (checked, cast, bound with
  `bind_cpu_input`: no copy on the CPU provider, one host-to-device copy inside the run on CUDA);
- `onnxruntime.OrtValue`: `bind_ortvalue_input`;
- an object whose `__dlpack_device__` is not the CPU: `OrtValue.from_dlpack` (no copy), where
  this onnxruntime has it;
- an object with `__cuda_array_interface__` (C-contiguous): `IOBinding.bind_input` with its
  device pointer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..ir.errors import FeedError
from ..ir.graph import Graph

#: DLPack device types that are host memory (kDLCPU, kDLCUDAHost, kDLROCMHost)
_DLPACK_HOST = (1, 3, 11)


@dataclass
class RawDeviceBuffer:
    """A C-contiguous device array given by pointer (`__cuda_array_interface__`)."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    device_id: int
    owner: Any  # keeps the producer's memory alive while bound


def _ort():
    import onnxruntime as ort
    return ort


def _onnx_dtypes() -> dict[int, np.dtype]:
    from .onnx import _DTYPE  # read at call time: the export module owns the mapping
    out = {}
    for name, code in _DTYPE.items():
        try:
            out[code] = np.dtype(name)
        except TypeError:  # a dtype numpy (with ml_dtypes) does not know
            continue
    return out


def is_device_array(a: Any) -> bool:
    """Whether `a` is bound as it is (an OrtValue, or a non-host DLPack / CUDA array object)."""
    if a.__class__ is np.ndarray or isinstance(a, (np.ndarray, np.generic, int, float, bool,
                                                   list, tuple)):
        return False
    if isinstance(a, _ort().OrtValue):
        return True
    if hasattr(a, "__cuda_array_interface__"):
        return True
    dev = getattr(a, "__dlpack_device__", None)
    if dev is None or not hasattr(a, "__dlpack__"):
        return False
    try:
        return int(dev()[0]) not in _DLPACK_HOST
    except Exception:  # noqa: BLE001 - an object that cannot say where it lives goes the host path
        return False


def to_bindable(a: Any) -> Any:
    """`a` as an OrtValue (no copy) or a RawDeviceBuffer; `a` must pass `is_device_array`.

    Raises:
        FeedError: a CUDA-array-interface object that is not C-contiguous.
    """
    ort = _ort()
    if isinstance(a, ort.OrtValue):
        return a
    if hasattr(a, "__dlpack__") and hasattr(ort.OrtValue, "from_dlpack") and \
            getattr(a, "__dlpack_device__", None) is not None:
        try:
            return ort.OrtValue.from_dlpack(a)
        except (TypeError, RuntimeError, ValueError):
            if not hasattr(a, "__cuda_array_interface__"):
                raise
    cai = a.__cuda_array_interface__
    shape = tuple(int(d) for d in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    strides = cai.get("strides")
    if strides is not None and tuple(strides) != _c_strides(shape, dtype.itemsize):
        raise FeedError(f"a {type(a).__name__} with strides {tuple(strides)} cannot be bound "
                        "without a copy; make it contiguous first")
    dev = getattr(a, "__dlpack_device__", None)
    device_id = int(dev()[1]) if dev is not None else 0
    return RawDeviceBuffer(int(cai["data"][0]), shape, dtype, device_id, a)


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    out, acc = [], itemsize
    for d in reversed(shape):
        out.append(acc)
        acc *= max(d, 1)
    return tuple(reversed(out))


def shape_and_dtype(v: Any) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and numpy dtype of an OrtValue or RawDeviceBuffer."""
    if isinstance(v, RawDeviceBuffer):
        return v.shape, v.dtype
    code = v.element_type()
    dtypes = _onnx_dtypes()
    if code not in dtypes:
        raise FeedError(f"an OrtValue of {v.data_type()} cannot be fed to a graphc graph")
    return tuple(int(d) for d in v.shape()), dtypes[code]


def split_device_feeds(graph: Graph, feeds: Mapping[str, Any], what: str = "feed"
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Feeds with every device array replaced by a stand-in, and the device arrays by name.

    The stand-in is a zero-strided numpy view (no memory) of the device array's shape and
    dtype, holding a value inside the input's declared range, so the graph's `FeedChecker`
    checks names, ranks, sizes and symbol bindings for host and device feeds alike.

    Raises:
        FeedError: a device array whose dtype is not the declared one (naming the input).
    """
    device = {k: to_bindable(a) for k, a in feeds.items() if is_device_array(a)}
    if not device:
        return dict(feeds), {}
    declared = {v.name: v for v in list(graph.inputs) + list(graph.params)}
    host = dict(feeds)
    for k, v in device.items():
        shape, dtype = shape_and_dtype(v)
        decl = declared.get(k)
        if decl is None:
            continue  # the checker names the unknown input
        want = np.dtype(decl.type.dtype)
        if dtype != want:
            raise FeedError(f"{what} {k!r} is a device array of dtype {dtype}, expected {want} "
                            f"(declared {decl.type}); a device feed is not cast, since that "
                            "would copy it")
        fill = decl.range.lo if decl.kind == "input" and decl.range is not None else 0
        host[k] = np.broadcast_to(np.asarray(fill, dtype), shape)
    return host, device


def foreign(feeds: Mapping[str, Any], device: Mapping[str, Any]) -> bool:
    """Whether any device feed came from another library (DLPack / CUDA array interface).

    Such an array may still be being written on its producer's CUDA stream, which onnxruntime's
    own stream does not wait for; the caller then runs `IOBinding.synchronize_inputs()` first.
    """
    ov = _ort().OrtValue
    return any(not isinstance(feeds[k], ov) for k in device)


def bind_input(binding: Any, name: str, value: Any) -> None:
    """Binds one feed: an OrtValue, a RawDeviceBuffer or a host (numpy) array."""
    if isinstance(value, np.ndarray):
        if not value.flags.c_contiguous:
            value = np.ascontiguousarray(value)
        if _ml_code(value.dtype) is not None:  # bfloat16, float8: as their raw bits
            binding.bind_ortvalue_input(name, _host_view(value))
        else:
            binding.bind_cpu_input(name, value)
    elif isinstance(value, RawDeviceBuffer):
        binding.bind_input(name, "cuda", value.device_id, value.dtype, list(value.shape), value.ptr)
    else:
        binding.bind_ortvalue_input(name, value)


# ---- OrtValues of any graphc dtype: onnxruntime's numpy conversions do not take ml_dtypes'
# bfloat16 or float8 arrays, so those travel as their raw bits (uint8 / uint16 views) -----------
#: ml_dtypes stores these one value per byte, ONNX packs them: not viewable as raw bits
_SUB_BYTE = frozenset({"int4", "uint4", "int2", "uint2", "float4_e2m1fn"})


def _ml_code(dtype: np.dtype) -> int | None:
    """The ONNX element type of an ml_dtypes dtype (bfloat16, the float8s), else None."""
    if dtype.type.__module__.split(".")[0] != "ml_dtypes" or dtype.name in _SUB_BYTE:
        return None
    from .onnx import _DTYPE
    return _DTYPE.get(dtype.name)


def _host_view(a: np.ndarray) -> Any:
    """A CPU OrtValue sharing `a`'s memory (`a` C-contiguous)."""
    ort = _ort()
    code = _ml_code(a.dtype)
    if code is not None:
        bits = a.view(np.dtype(f"u{a.dtype.itemsize}"))
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, code)
    return ort.OrtValue.ortvalue_from_numpy(a)


def empty_ortvalue(shape: tuple[int, ...], dtype: Any, device: str) -> Any:
    """An uninitialised OrtValue of `shape` and `dtype` on `device` ("cpu" or "cuda")."""
    dtype = np.dtype(dtype)
    code = _ml_code(dtype)
    elem: Any = dtype if code is None else code
    return _ort().OrtValue.ortvalue_from_shape_and_type(list(shape), elem, device, 0)


def ortvalue_from_array(a: np.ndarray, device: str) -> Any:
    """An OrtValue holding `a` on `device`: on "cpu" it shares `a`'s memory (pass a copy if `a`
    will change), elsewhere it is a copy."""
    a = np.asarray(a, order="C")
    if device == "cpu":
        return _host_view(a)
    if _ml_code(a.dtype) is None:
        return _ort().OrtValue.ortvalue_from_numpy(a, device, 0)
    out = empty_ortvalue(a.shape, a.dtype, device)
    out.update_inplace(_host_view(a))
    return out


def update_ortvalue(dst: Any, src: Any) -> None:
    """Copies `src` (a numpy array or an OrtValue, any device) into `dst`, keeping its address."""
    if isinstance(src, _ort().OrtValue):
        dst.update_inplace(src)
        return
    src = np.asarray(src, order="C")  # not ascontiguousarray: that makes a 0-d array (1,)
    dst.update_inplace(src if _ml_code(src.dtype) is None else _host_view(src))


def ortvalue_to_numpy(v: Any) -> np.ndarray:
    """A numpy copy of OrtValue `v` (from any device; bfloat16 / float8 as ml_dtypes arrays)."""
    dtype = _onnx_dtypes().get(v.element_type())
    if dtype is None or _ml_code(dtype) is None:
        return np.array(v.numpy(), copy=True)
    host = np.empty(tuple(v.shape()), dtype)
    _host_view(host).update_inplace(v)
    return host


def outputs_to_numpy(binding: Any, dtypes: list[np.dtype]) -> list[np.ndarray]:
    """The bound outputs of the last run as numpy arrays (outputs of `dtypes`, in order)."""
    if all(_ml_code(d) is None for d in dtypes):
        return binding.copy_outputs_to_cpu()
    return [ortvalue_to_numpy(v) for v in binding.get_outputs()]
