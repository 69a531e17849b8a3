"""What the ONNX importer checks before it trusts a model: hostile or malformed files are refused.

`load_model` reads a path or takes a ModelProto and refuses, each with an `OnnxImportError` that
names the file and the tensor or node: an empty or unparsable file, what `onnx.checker` rejects
(its message kept), a missing or unknown default-domain opset, a name written twice (by two nodes,
or by a node over a graph input or initializer), external data without a directory to read it
from, and declared tensors larger than the cap. `Limits` holds the caps (configurable per import).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir.errors import GraphcError

#: 2 GiB: the protobuf limit, above which onnx.checker cannot take a model in memory
_PROTO_LIMIT = 2**31 - 1


class OnnxImportError(GraphcError, ValueError):
    """The model is malformed, or uses ONNX ops, attributes or dtypes graphc cannot import."""


@dataclass(frozen=True)
class Limits:
    """Size caps of one import, in bytes.

    max_tensor_bytes: any one declared tensor (initializer, Constant value).
    max_fold_bytes: any one tensor computed at import time (constant folding, ConstantOfShape,
        Range, masks built for Trilu and CumSum), so a few bytes of model cannot make the
        importer allocate gigabytes.
    """
    max_tensor_bytes: int = 16 * 2**30
    max_fold_bytes: int = 256 * 2**20

    def check(self, shape: Any, dtype: Any, what: str, folding: bool = True) -> None:
        """Raises OnnxImportError (from the caller's context) if the tensor would be too big."""
        n = 1
        for d in shape:
            n *= max(int(d), 0)
        size = n * np.dtype(dtype).itemsize
        cap = self.max_fold_bytes if folding else self.max_tensor_bytes
        if size > cap:
            knob = "max_fold_bytes" if folding else "max_tensor_bytes"
            raise OnnxImportError(f"{what}: shape {tuple(int(d) for d in shape)} of {np.dtype(dtype)}"
                                  f" is {_human(size)}, over the import limit of {_human(cap)} "
                                  f"(import_onnx({knob}=...) raises it)")


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def load_model(model: Any, base_dir: str | os.PathLike | None) -> tuple[Any, str, str | None]:
    """The ModelProto, its label for messages and the directory its external data lives in.

    Raises:
        OnnxImportError: the file is empty or not an ONNX protobuf, or external data cannot be
            read safely (onnx's own path checks: no absolute paths, no "..", no symlinks).
    """
    import onnx
    from google.protobuf.message import DecodeError
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        label = os.path.basename(path)
        if not os.path.isfile(path):
            raise OnnxImportError(f"{path}: no such file")
        if os.path.getsize(path) == 0:
            raise OnnxImportError(f"{label}: the file is empty, not an ONNX model")
        base = os.fspath(base_dir) if base_dir is not None else os.path.dirname(os.path.abspath(path))
        try:
            proto = onnx.load(path, load_external_data=False)
        except DecodeError as exc:
            raise OnnxImportError(f"{label}: not an ONNX model (protobuf parse failed: {exc})") from None
        return proto, label, base
    if not isinstance(model, onnx.ModelProto):
        raise OnnxImportError(f"import_onnx takes a path or an onnx.ModelProto, got "
                              f"{type(model).__name__}")
    label = f"{model.graph.name or 'model'}.onnx"
    return model, label, None if base_dir is None else os.fspath(base_dir)


def check_model(model: Any, label: str, base_dir: str | None, limits: Limits) -> None:
    """Structural checks before import; raises OnnxImportError naming what is wrong."""
    import onnx
    from onnx.external_data_helper import uses_external_data
    if model.ByteSize() == 0:
        raise OnnxImportError(f"{label}: the model is empty (no graph, no opset_import)")
    _check_opsets(model, label)
    # declared sizes and external data first: the checker reads tensors' data too
    from onnx.external_data_helper import _get_all_tensors
    for t in _get_all_tensors(model):
        what = f"{label}: tensor {t.name!r}"
        if any(d < 0 for d in t.dims):
            raise OnnxImportError(f"{what} declares negative dims {list(t.dims)}")
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
        except Exception:  # noqa: BLE001 - an unknown enum value
            raise OnnxImportError(f"{what} has unknown data type {t.data_type}") from None
        limits.check(t.dims, dtype, what, folding=False)
        if uses_external_data(t) and base_dir is None:
            loc = next((e.value for e in t.external_data if e.key == "location"), "?")
            raise OnnxImportError(
                f"{what} keeps its data in external file {loc!r}, and no directory was given "
                "to read it from; pass import_onnx(model, base_dir=<the model's directory>) "
                "(the working directory is never used)")
    _check_ssa(model.graph, label)
    if model.ByteSize() < _PROTO_LIMIT:
        try:
            onnx.checker.check_model(_checker_probe(model))
        except onnx.checker.ValidationError as exc:
            raise OnnxImportError(f"{label}: onnx.checker rejects the model: {exc}") from None


def _checker_probe(model: Any) -> Any:
    """The model, or a copy adjusted where onnx.checker would judge what is not wrong.

    The checker requires a shape on the main graph's inputs and outputs, but onnxruntime runs
    models without them and hand-built models often leave them out (graphc infers the shapes):
    the copy gives them an empty one. And the checker looks for external data relative to the
    working directory: the copy holds empty tensors there instead, since `read_tensor` reads
    that data from the model's own directory with onnx's path checks. Every other rule stands.
    """
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    def unshaped(vi: Any) -> bool:
        return vi.type.HasField("tensor_type") and not vi.type.tensor_type.HasField("shape")
    io = lambda m: list(m.graph.input) + list(m.graph.output)  # noqa: E731
    if not any(unshaped(vi) for vi in io(model)) and \
            not any(uses_external_data(t) for t in _get_all_tensors(model)):
        return model
    import onnx
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for vi in io(probe):
        if unshaped(vi):
            vi.type.tensor_type.shape.SetInParent()
    for t in _get_all_tensors(probe):
        if uses_external_data(t):
            del t.external_data[:]
            t.data_location = onnx.TensorProto.DEFAULT
            t.dims[:] = [0]
            t.raw_data = b""
    return probe


def _check_opsets(model: Any, label: str) -> None:
    import onnx
    if not model.opset_import:
        raise OnnxImportError(f"{label}: the model declares no opset (opset_import is missing: a "
                              "truncated or hand-made file?)")
    default = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not default:
        if any(n.domain in ("", "ai.onnx") for n in model.graph.node):
            raise OnnxImportError(f"{label}: the model uses ONNX ops but declares no opset for the "
                                  "default domain")
        return
    newest = onnx.defs.onnx_opset_version()
    if len(default) > 1:
        raise OnnxImportError(f"{label}: opset_import lists the default domain {len(default)} times")
    if not 1 <= default[0] <= newest:
        raise OnnxImportError(f"{label}: opset {default[0]} is not a released ONNX opset "
                              f"(this onnx knows 1 to {newest})")


def _check_ssa(gp: Any, label: str) -> None:
    """Every name is written once: by a graph input, an initializer, or one node output."""
    written: dict[str, str] = {}
    for vi in gp.input:
        written.setdefault(vi.name, "a graph input")
    for t in gp.initializer:
        written.setdefault(t.name, "an initializer")
    for i, n in enumerate(gp.node):
        for out in n.output:
            if not out:
                continue
            if out in written:
                nm = f" {n.name!r}" if n.name else ""
                raise OnnxImportError(f"{label}: node {i} ({n.op_type}{nm}) writes {out!r}, which "
                                      f"{written[out]} already defines (a name is written once)")
            written[out] = f"node {i} ({n.op_type})"


def read_tensor(t: Any, label: str, base_dir: str | None, what: str = "initializer") -> np.ndarray:
    """A TensorProto's array; a tensor whose data does not fit its shape names the tensor."""
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data
    if uses_external_data(t):
        if base_dir is None:
            raise OnnxImportError(f"{label}: {what} {t.name!r} keeps its data in an external file;"
                                  " pass import_onnx(model, base_dir=<the model's directory>)")
        loaded = onnx.TensorProto()
        loaded.CopyFrom(t)  # the caller's model keeps pointing at its file
        try:  # onnx's checks: relative location, no "..", no symlink, within the file's bounds
            load_external_data_for_tensor(loaded, base_dir)
        except Exception as exc:  # noqa: BLE001 - onnx raises ValidationError, OSError, ValueError
            raise OnnxImportError(f"{label}: {what} {t.name!r}: cannot read its external data "
                                  f"from {base_dir!r}: {exc}") from None
        t = loaded
    try:
        return numpy_helper.to_array(t)
    except (ValueError, TypeError) as exc:
        raise OnnxImportError(f"{label}: {what} {t.name!r}: its data does not fit its declared "
                              f"shape {list(t.dims)} ({exc})") from None
