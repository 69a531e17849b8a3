"""onnxruntime execution: sessions, the Executable (io binding) and the training Stepper.

The export side (lowering a graph to an ONNX model) lives in `graphc.backends.onnx`, which
re-exports the public names of this module; this module registers the "onnxruntime" backend.
Device-resident feeds and OrtValue helpers are in `ort_device.py`. Only these modules (and
`onnx.py`, `onnx_inspect.py`) import onnx / onnxruntime.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..ir.errors import FeedError, GraphcError
from ..ir.feeds import FeedChecker
from ..ir.graph import Graph, Node
from .base import Backend, register_backend
from .executable import Executable
from .onnx import to_onnx
from .ort_device import (RawDeviceBuffer, bind_input, empty_ortvalue, foreign, ortvalue_from_array,
                         ortvalue_to_numpy, outputs_to_numpy, shape_and_dtype, split_device_feeds,
                         update_ortvalue)
from .stepper import Stepper


def missing_cpu_kernels(graph: Graph) -> list[Node]:
    """The nodes onnxruntime's CPU build has no kernel for: their op lists the node's output dtype
    in `onnxruntime_cpu_missing` (float64 erf, conv2d, conv_transpose2d, avg_pool2d, ...), or the
    op lists bfloat16 and takes a bfloat16 input (a bfloat16 comparison has a bool output)."""
    return [n for n in graph.nodes if n.output.type.dtype in n.op.onnxruntime_cpu_missing
            or ("bfloat16" in n.op.onnxruntime_cpu_missing
                and any(v.type.dtype == "bfloat16" for v in n.inputs))]


def check_kernels(graph: Graph, device: str) -> None:
    """Raises a GraphcError naming every node (op, dtype, source line) that onnxruntime cannot run
    on `device`, before a session is created; the CUDA provider has those kernels.

    Example: a float64 `gelu` (erf) on the CPU is refused, with the numpy and TVM backends
    suggested.
    """
    if device == "cuda":
        return
    missing = missing_cpu_kernels(graph)
    if not missing:
        return
    lines = "\n".join(f"  {n.source or '?'}: {n.op.name} on {n.output.type.dtype} (%{n.output.name})"
                      for n in missing)
    ops = ", ".join(sorted({f"{n.op.name} ({n.output.type.dtype})" for n in missing}))
    f64 = " or in float32" if all(n.output.type.dtype == "float64" for n in missing) else ""
    raise GraphcError(
        f"graph {graph.name!r}: onnxruntime's CPU build has no kernel for {ops}; "
        f"{len(missing)} node(s) would fail with NOT_IMPLEMENTED:\n{lines}\n"
        f"run this graph with backend='numpy' or backend='tvm' (or onnxruntime on device='cuda'{f64})")


def ort_providers(device: str, cuda_graph: bool = False) -> list[Any]:
    """onnxruntime providers for `device` (with `enable_cuda_graph` set on the CUDA provider when
    `cuda_graph`); raises a GraphcError if CUDA is asked for but not available."""
    import onnxruntime as ort
    if device == "cuda":
        avail = ort.get_available_providers()
        if "CUDAExecutionProvider" not in avail:
            raise GraphcError("device='cuda' needs onnxruntime with the CUDA provider, but this "
                              f"onnxruntime has only {', '.join(avail)}; install onnxruntime-gpu "
                              "(see README: 'CUDA') or use device='cpu'")
        cuda: Any = ("CUDAExecutionProvider", {"enable_cuda_graph": "1"}) if cuda_graph \
            else "CUDAExecutionProvider"
        return [cuda, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _session_options(ort: Any, session_options: Any) -> Any:
    """The caller's SessionOptions, or graphc's defaults (all graph optimizations, quiet)."""
    opts = session_options or ort.SessionOptions()
    if session_options is None:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
    return opts


def _without_initializers(model: Any, names: set[str]) -> bytes:
    """`model` serialized without the initializers `names` (the parameters, bound as inputs
    instead, so their values are held once, on the device, not also in the session)."""
    if not names:
        return model.SerializeToString()
    m = type(model)()
    m.CopyFrom(model)
    keep = [t for t in m.graph.initializer if t.name not in names]
    m.graph.ClearField("initializer")
    m.graph.initializer.extend(keep)
    return m.SerializeToString()


#: how the onnxruntime backend lowers graphc loops by default: "scan" (an ONNX Scan) or "unroll"
#: (the body repeated per step where the trip count is static). W3 training step, 1 thread,
#: steps per CPU-second, Scan vs unroll: 86.4/73.1 at seq 32, 11.2/7.8 at seq 256
#: (bench/bench_zoo.py --w3-loops, bench/results.md "W3 on loops"): Scan is faster.
#: `gc.export_onnx` always writes Scan
ONNXRUNTIME_LOOPS = "scan"


class OnnxExecutable(Executable):
    """Runs a graph on onnxruntime (CPU or CUDA) through io binding.

    The parameters live on the session's device as OrtValues: uploaded once when compiled, and
    again only by `set_params`. A feed is bound, not copied, where it can be: a numpy array is
    read in place on the CPU provider (on CUDA onnxruntime copies it to the device once, inside
    the run); an `onnxruntime.OrtValue`, or a device array with `__dlpack__` or
    `__cuda_array_interface__` (a CUDA torch tensor, a CuPy array), is bound as it is (see
    `graphc.backends.ort_device`). A parameter fed by name is used for that run only.

    Args:
        graph: the graph.
        device: "cpu" or "cuda".
        opset: the ai.onnx opset (see `to_onnx`).
        session_options: an `onnxruntime.SessionOptions` (default: all optimizations, quiet).
        loops: how graphc loops are lowered (`to_onnx`'s "scan" or "unroll").
        outputs: "numpy" (default) returns numpy arrays; "ortvalue" returns OrtValues left on
            the session's device, for a next graph or a DLPack consumer.

    Raises:
        GraphcError: `outputs` is neither, CUDA is not available, or a kernel is missing.

    Example:
        >>> exe = OnnxExecutable(g, device="cuda", outputs="ortvalue"); exe(x=x_ortvalue)["y"]
    """

    backend = "onnxruntime"

    def __init__(self, graph: Graph, device: str = "cpu", opset: int | None = None,
                 session_options: Any = None, loops: str = ONNXRUNTIME_LOOPS,
                 outputs: str = "numpy"):
        super().__init__(graph, device)
        import onnxruntime as ort
        if outputs not in ("numpy", "ortvalue"):
            raise GraphcError(f"outputs must be 'numpy' or 'ortvalue', got {outputs!r}")
        self.outputs = outputs
        self._ort = ort
        check_kernels(graph, device)
        self.model = to_onnx(graph, opset, params_as_inputs=True, loops=loops)
        self.session = ort.InferenceSession(
            _without_initializers(self.model, {p.name for p in graph.params}),
            _session_options(ort, session_options), providers=ort_providers(device))
        self._dev = "cuda" if device == "cuda" else "cpu"
        # copies: on the CPU an OrtValue made from numpy shares its memory with the array
        self._params = {p.name: ortvalue_from_array(np.array(p.data, copy=True, order="C"),
                                                    self._dev) for p in graph.params}
        self._local = threading.local()  # one IOBinding per thread: a binding is not thread-safe
        self._out_dtypes = [np.dtype(v.type.dtype) for v in graph.outputs.values()]

    # ---- parameters on the device -------------------------------------------------------------
    def set_params(self, values: dict[str, Any]) -> None:
        """Overwrites resident parameters (numpy arrays or OrtValues) for all later runs.

        Raises:
            FeedError: an unknown name, or a value whose shape or dtype is not the parameter's.
        """
        bad = [n for n in values if n not in self._params]
        if bad:
            raise FeedError(f"graph {self.graph.name!r} has no parameter named "
                            f"{', '.join(map(repr, bad))}; its parameters are "
                            f"{', '.join(self._params) or '(none)'}")
        for n, a in values.items():
            t = self.graph.value(n).type
            if isinstance(a, self._ort.OrtValue):
                shape, dtype = shape_and_dtype(a)
            else:
                a = np.asarray(a, order="C")
                shape, dtype = a.shape, a.dtype
            if tuple(shape) != tuple(t.shape) or dtype != np.dtype(t.dtype):
                raise FeedError(f"parameter {n!r}: got {dtype}{list(shape)}, expected {t}")
            update_ortvalue(self._params[n], a)

    def params(self) -> dict[str, np.ndarray]:
        """Copies of the resident parameters, by name."""
        return {n: ortvalue_to_numpy(v) for n, v in self._params.items()}

    # ---- running --------------------------------------------------------------------------------
    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Checks `feeds` (FeedError naming the input), binds them, runs; returns the outputs.

        Device feeds are checked for shape and dtype only (their values stay on the device).
        """
        checker = self.__dict__.get("_feed_checker")
        if checker is None or checker.graph is not self.graph:
            checker = self._feed_checker = FeedChecker(self.graph)
        host, device = split_device_feeds(self.graph, feeds)
        arrays, _ = checker.check(host)
        arrays.update(device)
        return dict(zip(self.output_names,
                        self._run_bound(arrays, bool(device) and foreign(feeds, device))))

    def _binding(self) -> Any:
        b = getattr(self._local, "binding", None)
        if b is None:
            b = self._local.binding = self.session.io_binding()
            for n, v in self._params.items():
                b.bind_ortvalue_input(n, v)
            self._local.fed_params = set()
        return b

    def _run_bound(self, feeds: dict[str, Any], sync: bool = False) -> list[Any]:
        b = self._binding()
        fed = {n for n in feeds if n in self._params}
        for n in self._local.fed_params - fed:  # fed last run only: back to the resident value
            b.bind_ortvalue_input(n, self._params[n])
        self._local.fed_params = fed
        for n, a in feeds.items():
            bind_input(b, n, a)
        out_device = self._dev if self.outputs == "ortvalue" else "cpu"
        for o in self.output_names:  # rebound each run: a fresh buffer, so results never alias
            b.bind_output(o, out_device)
        if sync:  # another library's array: let its producer finish writing it
            b.synchronize_inputs()
        self.session.run_with_iobinding(b)
        if self.outputs == "ortvalue":
            return b.get_outputs()
        return outputs_to_numpy(b, self._out_dtypes)

    def _run(self, feeds, bindings):
        return self._run_bound(feeds)


# ---- training: a Stepper on onnxruntime with io binding ----------------------------------------

class OrtStepper(Stepper):
    """Runs a training-step graph on onnxruntime; parameters and state stay in OrtValues.

    Two sets of OrtValues (A and B) hold the parameters and optimizer state, on the session's
    device. Two IOBindings are built once: one reads A and writes B, the other reads B and writes
    A; a step rebinds only the batch and updates the step/lr scalars in place, runs, and flips
    parity. No per-step graph rebuild, no per-step Python loop over parameters, and on CUDA only
    the batch (one host-to-device copy, inside the run; none for a batch of device arrays such
    as OrtValues, see `graphc.backends.ort_device`) and the metrics cross the bus.

    With `cuda_graph=True` onnxruntime captures one CUDA graph per parity (run option
    `gpu_graph_id` 0 and 1) and replays it from then on. A captured graph reads and writes the
    addresses it was captured with, so every input and output is then a fixed device buffer
    (`fixed_buffers`): each step copies the batch into the fixed batch buffers (one copy, device
    to device for a device batch) and the step/lr scalars into theirs. onnxruntime runs a graph
    twice before it captures it, with the same bindings; the ping-pong buffers make those runs
    repeat the same step, since no run writes what it reads.
    """

    backend = "onnxruntime"

    def __init__(self, graph: Graph, device: str = "cpu", seed: int = 0, opset: int | None = None,
                 session_options: Any = None, threads: int | None = None, spin: bool | None = None,
                 loops: str = ONNXRUNTIME_LOOPS, cuda_graph: bool = False,
                 fixed_buffers: bool | None = None):
        """`threads` sets onnxruntime's intra-op threads; `spin=False` stops its idle threads from
        spin-waiting, which doubled throughput on an oversubscribed 2-core machine here (and
        costs a little latency on an idle one); the default spins only while the 1-minute load
        average is below the core count. `loops` is `to_onnx`'s (scan or unroll).

        `cuda_graph=True` captures CUDA graphs (device "cuda", static shapes, loops unrolled:
        onnxruntime cannot capture Scan); `fixed_buffers` (default: `cuda_graph`) binds every
        input and output to a fixed buffer and copies the batch in, the path a CUDA graph needs,
        which `fixed_buffers=True` alone exercises on any device.

        Raises:
            GraphcError: `cuda_graph` on a device other than "cuda", or (with `cuda_graph` or
                `fixed_buffers`) a step with symbolic shapes; a missing kernel or provider.
        """
        super().__init__(graph, device, seed)
        import onnxruntime as ort
        self._ort = ort
        self.cuda_graph = bool(cuda_graph)
        self.fixed_buffers = self.cuda_graph if fixed_buffers is None else bool(fixed_buffers)
        if self.cuda_graph:
            check_cuda_graph(graph, device)
            loops = "unroll"
        elif self.fixed_buffers:
            check_static_shapes(graph, "fixed_buffers=True")
        check_kernels(graph, device)
        self.model = to_onnx(graph, opset, loops=loops)
        if self.cuda_graph:
            check_capturable(self.model)
        opts = session_options or ort.SessionOptions()
        if session_options is None:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        if spin is None and session_options is None:
            # idle workers spin only with a core to spare: on an oversubscribed machine spinning
            # cost 1.2-5x per step (bench/results.md, "onnxruntime session settings")
            import os
            try:
                spin = os.getloadavg()[0] < (os.cpu_count() or 1)
            except (AttributeError, OSError):  # no load average (Windows): onnxruntime's default
                spin = None
        if spin is not None:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        providers = ort_providers(device, self.cuda_graph)
        try:
            self.session = ort.InferenceSession(self.model.SerializeToString(), opts,
                                                providers=providers)
        except Exception as exc:  # noqa: BLE001 - re-raised with what to do about it
            if not self.cuda_graph:
                raise
            raise GraphcError(f"training step {graph.name!r}: onnxruntime cannot capture it as a "
                              f"CUDA graph ({exc}); run it with cuda_graph=False") from exc
        dev = self._dev = "cuda" if device == "cuda" else "cpu"
        spec = self.spec
        carried = spec.carried
        # copies: on the CPU an OrtValue made from numpy shares its memory, and these get written
        bufs_a = {n: ortvalue_from_array(np.array(spec.initial[n], copy=True, order="C"), dev)
                  for n in carried}
        bufs_b = {n: empty_ortvalue(spec.initial[n].shape, spec.initial[n].dtype, dev)
                  for n in carried}
        self._bufs = (bufs_a, bufs_b)
        self._step_host = np.zeros((), np.int64)
        self._lr_host = np.zeros((), self._lr_dtype)
        self._seed_host = np.asarray(self.seed, np.int64)
        if self.fixed_buffers:  # scalars in fixed buffers on the device, written each step
            self._step_ov = empty_ortvalue((), np.int64, dev)
            self._lr_ov = empty_ortvalue((), self._lr_dtype, dev)
            self._seed_ov = ortvalue_from_array(self._seed_host.copy(), dev)
            self._shared = False
        else:
            self._step_ov = ortvalue_from_array(self._step_host, "cpu")
            self._lr_ov = ortvalue_from_array(self._lr_host, "cpu")
            self._seed_ov = ortvalue_from_array(self._seed_host, "cpu")
            # on the CPU these OrtValues share memory with their numpy arrays, so a step writes
            # the step/lr scalars and reads the metrics without a call into onnxruntime; checked
            self._step_host[()] = 1
            self._shared = bool(self._step_ov.numpy()[()] == 1)
        out_of = {src: o for o, src in spec.updates.items()}
        self._metric_ov, self._metric_host = {}, {}
        for m in spec.metrics:
            t = graph.outputs[m].type
            if self.fixed_buffers:
                self._metric_ov[m] = empty_ortvalue(_static(t.shape), t.dtype, dev)
            elif t.is_static:
                host = np.zeros(_static(t.shape), t.dtype)
                self._metric_host[m] = host
                self._metric_ov[m] = ortvalue_from_array(host, "cpu")
            else:
                self._metric_ov[m] = None
        self._batch_bufs = {n: empty_ortvalue(_static(self._inputs[n].type.shape),
                                              self._inputs[n].type.dtype, dev)
                            for n in spec.batch} if self.fixed_buffers else {}
        self._bindings = []
        for src, dst in ((bufs_a, bufs_b), (bufs_b, bufs_a)):
            b = self.session.io_binding()
            for n in carried:
                b.bind_ortvalue_input(n, src[n])
                b.bind_ortvalue_output(out_of[n], dst[n])
            for n, buf in self._batch_bufs.items():
                b.bind_ortvalue_input(n, buf)
            b.bind_ortvalue_input(spec.step, self._step_ov)
            b.bind_ortvalue_input(spec.lr, self._lr_ov)
            if spec.rng_seed:
                b.bind_ortvalue_input(spec.rng_seed, self._seed_ov)
            for m, mv in self._metric_ov.items():
                if mv is None:
                    b.bind_output(m, "cpu")
                else:
                    b.bind_ortvalue_output(m, mv)
            self._bindings.append(b)
        # one captured graph per parity: each binding has its own fixed buffers
        self._run_options: list[Any] = [None, None]
        if self.fixed_buffers:
            for parity in (0, 1):
                ro = ort.RunOptions()
                ro.add_run_config_entry("gpu_graph_id", str(parity))
                self._run_options[parity] = ro
        self._bound_outputs = [out_of[n] for n in carried] + list(self._metric_ov)
        self._parity = 0
        self._can_rollback = False
        self._dynamic_metrics = any(mv is None for mv in self._metric_ov.values())
        self._device_checker: FeedChecker | None = None
        self._sync = False

    def check_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch checked as `Stepper.check_batch` does; device arrays (OrtValues, DLPack or
        CUDA-array-interface objects) are checked for shape and dtype and kept as they are."""
        host, device = split_device_feeds(self.graph, batch, "batch input")
        self._sync = bool(device) and foreign(batch, device)
        if not device:
            return self._checker.check(batch)[0]
        if self._device_checker is None:  # no copies: the stand-ins for device arrays are views
            self._device_checker = FeedChecker(self.graph, self.spec.batch, what="batch input",
                                               allow_params=False)
        arrays = self._device_checker.check(host)[0]
        arrays.update(device)
        return arrays

    def _step(self, batch, lr):
        b = self._bindings[self._parity]
        if self.fixed_buffers:
            for n, buf in self._batch_bufs.items():
                _copy_into(buf, n, batch[n])
        else:
            for n in self.spec.batch:
                bind_input(b, n, batch[n])
            if self._sync:  # another library's array: let its producer finish writing it
                b.synchronize_inputs()
        self._step_host[()] = self.step_count
        if self._shared:
            self._lr_host[()] = lr
        else:
            update_ortvalue(self._step_ov, self._step_host)
            update_ortvalue(self._lr_ov, np.asarray(lr, self._lr_dtype))
        self.session.run_with_iobinding(b, self._run_options[self._parity])
        self._parity ^= 1
        self._can_rollback = True  # the other buffer set still holds this step's inputs
        if self._dynamic_metrics:
            outs = dict(zip(self._bound_outputs, b.get_outputs()))  # in the order bound
            return {m: (mv if mv is not None else outs[m]).numpy().copy()
                    for m, mv in self._metric_ov.items()}
        # copies: the next step overwrites these buffers
        if self._shared:
            return {m: h.copy() for m, h in self._metric_host.items()}
        return {m: ortvalue_to_numpy(mv) for m, mv in self._metric_ov.items()}

    def _get(self):
        cur = self._bufs[self._parity]
        return {n: ortvalue_to_numpy(v) for n, v in cur.items()}

    def _set(self, values):
        cur = self._bufs[self._parity]
        for n, a in values.items():
            # in place: the bindings (and a captured CUDA graph) keep these addresses
            update_ortvalue(cur[n], np.asarray(a, dtype=self._inputs[n].type.dtype, order="C"))
        self._can_rollback = False

    def _rollback(self):
        # the step read one buffer set and wrote the other: flipping back restores its inputs
        if not self._can_rollback:
            return False
        self._parity ^= 1
        self._can_rollback = False
        return True


def _static(shape: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)


def _copy_into(buf: Any, name: str, value: Any) -> None:
    """Copies one batch input into its fixed buffer (host to device, or device to device)."""
    if isinstance(value, RawDeviceBuffer):
        raise FeedError(f"batch input {name!r}: a {type(value.owner).__name__} given only by "
                        "__cuda_array_interface__ cannot be copied into the fixed batch buffer "
                        "(cuda_graph / fixed_buffers); pass a numpy array, an OrtValue or an "
                        "array with __dlpack__")
    update_ortvalue(buf, value)


def check_static_shapes(graph: Graph, what: str) -> None:
    """Raises a GraphcError naming the inputs and outputs of `graph` with symbolic dims."""
    dyn = [f"input {v.name!r} is {v.type}" for v in graph.inputs if not v.type.is_static]
    dyn += [f"output {k!r} is {v.type}" for k, v in graph.outputs.items() if not v.type.is_static]
    if dyn:
        raise GraphcError(
            f"{what} needs static shapes (a captured CUDA graph replays fixed sizes from fixed "
            f"addresses), but training step {graph.name!r} has symbolic ones: {'; '.join(dyn)}; "
            "build the step with a fixed batch size, e.g. gc.spec((128, 784)) instead of "
            "gc.spec(('N', 784)), and drop the last partial batch")


def check_cuda_graph(graph: Graph, device: str) -> None:
    """Raises a GraphcError unless `graph` can be captured as CUDA graphs on `device`."""
    if device != "cuda":
        raise GraphcError(
            f"cuda_graph=True needs device='cuda': onnxruntime captures CUDA graphs only on its "
            f"CUDA provider, and this stepper is for device={device!r}; drop cuda_graph (or pass "
            "fixed_buffers=True to run the fixed-buffer path a CUDA graph uses)")
    check_static_shapes(graph, "cuda_graph=True")


def check_capturable(model: Any) -> None:
    """Raises a GraphcError naming the control-flow nodes onnxruntime cannot capture."""
    flow = [f"{n.op_type} {n.name!r}" for n in model.graph.node
            if n.op_type in ("Scan", "Loop", "If")]
    if flow:
        raise GraphcError(f"cuda_graph=True: onnxruntime cannot capture control flow, and the "
                          f"lowered step has {', '.join(flow)} (a loop whose trip count is not "
                          "static stays a Scan); run it with cuda_graph=False")


class OnnxRuntimeBackend(Backend):
    """onnxruntime, CPU or CUDA: graphs lowered to standard ONNX; training state in OrtValues."""

    name = "onnxruntime"
    aliases = ("onnx",)
    devices = ("cpu", "cuda")
    lowering_rule = "onnx"

    def compile(self, graph: Graph, device: str = "cpu", **options: Any) -> Executable:
        return OnnxExecutable(graph, device=device, **options)

    def stepper(self, graph: Graph, device: str = "cpu", seed: int = 0, **options: Any) -> Stepper:
        return OrtStepper(graph, device, seed, **options)

    def available_devices(self) -> list[str]:
        import onnxruntime as ort
        return ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else [])


register_backend(OnnxRuntimeBackend())
