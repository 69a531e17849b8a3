"""TVM backend: lowers a graph to Relax with BlockBuilder, compiles it with LLVM (or CUDA), runs it.

This is the only graphc module (with its `tvm_*.py` helpers) that imports tvm. Tested with
apache-tvm 0.27.0 (`TVM_VERSIONS`); the Relax Python API moves between releases.

Symbolic dims stay symbolic: every symbol ("N") becomes one int64 `tir.Var`, so a compiled
module serves every batch size. Parameters are arguments of the Relax function, held as TVM
arrays on the device by the executable, so they are not baked into the module and stay on the
device between calls.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import time
from typing import Any, Sequence

import numpy as np

from ..ir.errors import GraphcError
from ..ir.graph import Graph
from ..ir.printer import node_in_context
from ..ir.types import TensorType, parse_dim
from ..ir.roles import Role
from .base import Backend, register_backend
from .executable import Executable
from .stepper import Stepper

#: apache-tvm releases this backend was tested with (the Relax API differs in others)
TVM_VERSIONS = (">=0.27.0", "<0.28")

def _tvm():
    from .tvm_threads import configure_threads
    configure_threads()  # before TVM's thread pool starts: its own default is half the CPUs
    try:
        import tvm
        from tvm import relax  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise GraphcError("backend='tvm' needs apache-tvm 0.27: install graphc's tvm extra "
                          "(pip install 'graphc[tvm]')") from exc
    return tvm


class TvmEmitter:
    """What a primitive's `tvm` rule gets: Relax ops and helpers, never tvm itself.

    Attributes:
        R: `tvm.relax.op` (e.g. `e.R.add`, `e.R.nn.conv2d`).
        te: `tvm.te`, for rules written as a tensor expression (`e.emit_te`).
        tir: `tvm.tirx`, for scalar expressions inside `te.compute`.
        in_types: graphc types of the node's inputs; `out_type`: of its output.
    """

    def __init__(self, graph: Graph, bind: dict[str, int] | None = None):
        tvm = _tvm()
        from tvm import relax, te, tirx
        self.graph = graph
        self.relax, self.R, self.te, self.tir = relax, relax.op, te, tirx
        self.bb = relax.BlockBuilder()
        self.syms: dict[str, Any] = {}
        #: symbols fixed to a size (a static-shape specialisation): they lower as constants
        self.bind = dict(bind or {})
        self.in_types: list[TensorType] = []
        self.out_type: TensorType | None = None
        self._tvm = tvm
        #: SIMD width the rules may shape their loops for (graphc's schedules assume AVX2)
        self.vector_bits = 256

    # ---- dims and types ------------------------------------------------------------------
    def sym(self, name: str):
        """The int64 tir.Var standing for symbol `name` (one per symbol per module), or its
        size as an int64 constant where `bind` fixes it."""
        if name not in self.syms:
            self.syms[name] = (self.tir.IntImm("int64", self.bind[name]) if name in self.bind
                               else self.tir.Var(name, "int64"))
        return self.syms[name]

    def dim(self, d):
        """A dim (int or "8*N") as an int or an int64 PrimExpr over the symbols."""
        if isinstance(d, (int, np.integer)):
            return int(d)
        coef, syms = parse_dim(d)
        if all(s in self.bind for s in syms):
            return int(coef * np.prod([self.bind[s] for s in syms.elements()], dtype=np.int64))
        expr = self.tir.IntImm("int64", coef)
        for s in sorted(syms.elements()):
            expr = expr * self.sym(s)
        return expr

    def shape(self, dims: Sequence) -> list:
        """Dims resolved to ints and PrimExprs, for Relax ops taking a shape."""
        return [self.dim(d) for d in dims]

    def tensor_type(self, t: TensorType):
        return self.relax.TensorType(self.shape(t.shape), t.dtype)

    # ---- values ----------------------------------------------------------------------------
    def const(self, value, dtype: str | None = None):
        """A Relax constant holding `value` (a numpy array or Python scalar)."""
        arr = np.asarray(value, dtype=dtype)
        return self.relax.const(arr, str(arr.dtype))

    def scalar(self, value, dtype: str):
        """A rank-0 constant of `dtype`."""
        return self.relax.const(np.asarray(value, dtype=dtype), dtype)

    def scan(self, xs: list, body: Graph, n_carry: int, n_xs: int, length, reverse: bool,
             index: int):
        """One result of a `scan` node, the body unrolled at lowering time (tvm_control)."""
        from .tvm_control import lower_scan
        return lower_scan(self, xs, body, n_carry, n_xs, length, reverse, index)

    def emit(self, expr):
        """Binds `expr` to a dataflow variable (rules may return unbound expressions too)."""
        return expr if isinstance(expr, self.relax.Var) else self.bb.emit(expr)

    def matmul_ta(self, x, y):
        """x.T @ y for 2-D x (k, m) and y (k, n), reading x in place: no transposed copy, and
        the rows of an output tile are contiguous in x."""
        te = self.te

        def matmul_ta(a, b):
            k = te.reduce_axis((0, a.shape[0]), name="k")
            return te.compute((a.shape[1], b.shape[1]),
                              lambda i, j: te.sum(a[k, i] * b[k, j], axis=k), name="matmul")
        return self.emit_te(matmul_ta, self.emit(x), self.emit(y))

    def vector_lanes(self, value) -> int:
        """Elements of `value`'s dtype per SIMD register of the CPU (8 float32 on AVX2)."""
        bits = np.dtype(str(value.ty.dtype)).itemsize * 8
        return max(self.vector_bits // bits, 1)

    @property
    def topi(self):
        """`tvm.topi`, TE operator library for `emit_te`."""
        from tvm import topi
        return topi

    def emit_te(self, fn, *args, **kwargs):
        """Emits a TE function of Relax values (arguments arrive as te.Tensors)."""
        return self.bb.emit_te(fn, *args, **kwargs)


def lower_to_relax(graph: Graph, bind: dict[str, int] | None = None):
    """Lowers `graph` to an IRModule whose `main(*inputs, *params)` returns a tuple of outputs;
    `bind` fixes symbols to sizes (`{"N": 128}`: a module for that batch size only).

    Raises GraphcError naming every op without a TVM lowering before emitting anything.
    """
    TvmBackend().check_lowering(graph, raise_on_missing=True)
    e = TvmEmitter(graph, bind)
    relax = e.relax
    env: dict[str, Any] = {}
    args = []
    for v in graph.inputs + graph.params:
        var = relax.Var(v.name, e.tensor_type(v.type))
        env[v.name] = var
        args.append(var)
    bb = e.bb
    with bb.function("main", args):
        with bb.dataflow():
            for node in graph.nodes:
                e.in_types = [v.type for v in node.inputs]
                e.out_type = node.output.type
                try:
                    out = node.op.tvm(e, *[env[v.name] for v in node.inputs], **node.attrs)
                    out = e.emit(out)
                except GraphcError:
                    raise
                except Exception as exc:  # noqa: BLE001 - re-raised with the node in context
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise GraphcError(f"{node.source or '?'}: lowering {node.op.name} to TVM Relax "
                                      f"failed: {first}\n{node_in_context(graph, node)}") from exc
                _check_struct(e, node, out)
                env[node.output.name] = out
            outs = [env[v.name] for v in graph.outputs.values()]
            gv = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(gv)
    return bb.get()


def _check_struct(e: TvmEmitter, node, out) -> None:
    """A rule's result must have the node's rank and dtype; catches wrong rules at lowering time."""
    sinfo = out.ty
    want = node.output.type
    ndim, dtype = getattr(sinfo, "ndim", None), str(getattr(sinfo, "dtype", ""))
    if ndim not in (None, -1, want.rank) or (dtype and dtype != want.dtype):
        raise GraphcError(f"{node.source or '?'}: the TVM rule of {node.op.name} produced "
                          f"{sinfo} but the node is {want}\n{node_in_context(e.graph, node)}")


# ---- targets ---------------------------------------------------------------------------------

def make_target(target: Any = None, device: str = "cpu"):
    """A tvm Target for `device`: LLVM for this CPU (with its cores) or CUDA.

    `target` may be None, "llvm", "cuda", a dict (`{"kind": "llvm", "mcpu": "znver3"}`) or a
    Target. Raises GraphcError for device="cuda" where TVM sees no GPU.
    """
    tvm = _tvm()
    if device == "cuda":
        if not tvm.cuda(0).exist:
            raise GraphcError("device='cuda': TVM sees no CUDA GPU on this machine (tvm.cuda(0).exist "
                              "is False); use device='cpu', or run where an NVIDIA GPU and driver are "
                              "present")
        if target in (None, "cuda"):
            return tvm.target.Target.from_device(tvm.cuda(0))
        return tvm.target.Target(target)
    if target in (None, "llvm"):
        from tvm.target.codegen import llvm_get_system_cpu
        return tvm.target.Target({"kind": "llvm", "mcpu": llvm_get_system_cpu(),
                                  "num-cores": os.cpu_count() or 1})
    if isinstance(target, str) and " " in target:
        raise GraphcError(f"target {target!r}: TVM 0.27 rejects option strings; pass a dict such as "
                          "{'kind': 'llvm', 'mcpu': 'znver3', 'num-cores': 2}")
    return tvm.target.Target(target)


#: seconds a TVM compile may take unless `compile_timeout=` or GRAPHC_TVM_COMPILE_TIMEOUT says
DEFAULT_COMPILE_TIMEOUT = 300.0
_TIMEOUT_ENV = "GRAPHC_TVM_COMPILE_TIMEOUT"


class CompileTimeoutError(GraphcError):
    """A TVM compile ran past its time limit (`compile_timeout=`, GRAPHC_TVM_COMPILE_TIMEOUT)."""


def compile_timeout_s(compile_timeout: float | None = None) -> float | None:
    """The compile time limit in seconds, or None for no limit.

    `compile_timeout` wins; None reads GRAPHC_TVM_COMPILE_TIMEOUT, else `DEFAULT_COMPILE_TIMEOUT`
    (300). 0, a negative number, inf, or "none"/"off" in the variable mean no limit.

    Raises:
        GraphcError: the variable holds something else.
    """
    if compile_timeout is None:
        raw = os.environ.get(_TIMEOUT_ENV, "").strip()
        if not raw:
            return DEFAULT_COMPILE_TIMEOUT
        if raw.lower() in ("none", "off", "inf"):
            return None
        try:
            compile_timeout = float(raw)
        except ValueError:
            raise GraphcError(f"{_TIMEOUT_ENV}={raw!r}: expected seconds (e.g. 600), or 'none' for "
                              "no limit") from None
    t = float(compile_timeout)
    return None if t <= 0 or t == float("inf") else t


def build(graph: Graph, target: Any = None, device: str = "cpu", cache: bool = True,
          cache_dir: str | None = None, compile_timeout: float | None = None,
          bind: dict[str, int] | None = None):
    """Lowers and compiles `graph`; returns (runtime module or executable, compile info dict).
    `bind` fixes symbols to sizes (a static-shape module, see `tvm_static`).

    Uses the on-disk cache (see `tvm_cache`) unless `cache` is False. With a time limit (see
    `compile_timeout_s`; 300 s by default) TVM compiles in a forked child process that writes the
    module into the cache (a throwaway one if `cache` is False), and the module is loaded from
    there; a child still running at the limit is killed.

    Raises:
        CompileTimeoutError: the limit passed; names the graph, the limit and the stage (the
            TVM pass that was running).
        GraphcError: a node without a TVM lowering, or the compiler failed or died.
    """
    from . import tvm_cache
    from .tvm_schedule import PIPELINE_VERSION, optimize
    tvm = _tvm()
    tgt = make_target(target, device)
    key_parts = tvm_cache.key_parts(graph, pipeline=PIPELINE_VERSION, target=str(tgt),
                                    tvm_version=tvm.__version__)
    if bind:
        key_parts["static"] = ",".join(f"{k}={v}" for k, v in sorted(bind.items()))
    if cache:
        mod = tvm_cache.load(graph.name, key_parts, cache_dir)
        if mod is not None:
            return mod, {"cached": True}
    limit = compile_timeout_s(compile_timeout)
    # a hit needs no lowering; a miss lowers first, so a missing lowering is reported (all of
    # them, with source lines) before anything is compiled
    irmod = lower_to_relax(graph, bind)
    t0 = time.perf_counter()
    if limit is not None and "fork" in multiprocessing.get_all_start_methods():
        root = cache_dir if cache else tempfile.mkdtemp(prefix="graphc-tvm-")
        try:
            _compile_in_child(graph.name, irmod, tgt, key_parts, root, limit)
            ex = tvm_cache.load(graph.name, key_parts, root)
        finally:
            if not cache:
                shutil.rmtree(root, ignore_errors=True)  # the loaded library stays mapped
        if ex is not None:
            return ex, {"cached": False, "compile_s": time.perf_counter() - t0}
        # TVM could not load the library it exported (a module holding an empty constant
        # of shape (3, 0) fails with "Invalid DLTensor file format"): the child finished
        # within the limit, so compiling the same module here finishes too
        cache = False
    ex = tvm.compile(irmod, target=tgt, relax_pipeline=optimize(tgt))
    info = {"cached": False, "compile_s": time.perf_counter() - t0}
    if cache:
        tvm_cache.store(graph.name, key_parts, ex, cache_dir)
    return ex, info


def _compile_child(irmod, tgt, graph_name: str, key_parts: dict, root: str | None, conn) -> None:
    """In the forked child: compile, store the module in the cache at `root`, report to `conn`.

    Messages: ("stage", text) before each TVM pass and before the export, then ("done", None)
    or ("error", text).
    """
    try:
        tvm = _tvm()
        from tvm.ir.instrument import pass_instrument

        from . import tvm_cache
        from .tvm_schedule import optimize

        @pass_instrument
        class _Stage:
            def run_before_pass(self, mod, info):
                conn.send(("stage", f"TVM pass {info.name}"))

            def run_after_pass(self, mod, info):
                conn.send(("stage", f"after TVM pass {info.name} (LLVM code generation if it was "
                                    "the last)"))
        cur = tvm.transform.PassContext.current()
        with tvm.transform.PassContext(opt_level=cur.opt_level, required_pass=cur.required_pass,
                                       disabled_pass=cur.disabled_pass,
                                       instruments=list(cur.instruments) + [_Stage()],
                                       config=cur.config):
            ex = tvm.compile(irmod, target=tgt, relax_pipeline=optimize(tgt))
        conn.send(("stage", "exporting the compiled module (the system linker)"))
        tvm_cache.store(graph_name, key_parts, ex, root)
        conn.send(("done", None))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        first = str(exc).strip().splitlines()
        try:
            conn.send(("error", f"{type(exc).__name__}: {first[-1] if first else ''}"))
        except OSError:  # the parent stopped listening (Ctrl-C, its own limit)
            pass


def _compile_in_child(graph_name: str, irmod, tgt, key_parts: dict, root: str | None,
                      limit: float) -> None:
    """Runs `_compile_child` in a forked process; waits up to `limit` seconds, then kills it.

    Forked, not spawned: the child needs the lowered module and TVM already in memory (a fresh
    interpreter would import TVM again, seconds; and Relax modules do not survive save_json).
    """
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_compile_child, args=(irmod, tgt, graph_name, key_parts, root, send),
                       name=f"graphc-tvm-compile-{graph_name}", daemon=True)
    stage = "starting the compiler process"
    deadline = time.monotonic() + limit
    proc.start()
    send.close()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CompileTimeoutError(
                    f"graph {graph_name!r}: the TVM compile did not finish within {limit:g} s and "
                    f"was stopped (stage: {stage}). Raise the limit with compile_timeout=<seconds> "
                    f"or {_TIMEOUT_ENV} (0 or 'none' for no limit), or run the graph with "
                    "backend='onnxruntime' or 'numpy'")
            if not recv.poll(min(left, 1.0)):
                continue
            try:
                kind, payload = recv.recv()
            except EOFError:
                proc.join(5)
                raise GraphcError(f"graph {graph_name!r}: the TVM compiler process died (exit code "
                                  f"{proc.exitcode}) during {stage}") from None
            if kind == "stage":
                stage = payload
            elif kind == "done":
                proc.join(left)
                return
            else:
                raise GraphcError(f"graph {graph_name!r}: TVM failed to compile it ({stage}): "
                                  f"{payload}")
    finally:
        recv.close()
        if proc.is_alive():
            proc.kill()
        proc.join()


class TvmExecutable(Executable):
    """A graph compiled by TVM; parameters live on the device as TVM arrays.

    Args:
        graph: the graph.
        device: "cpu" or "cuda".
        target: TVM target (default: LLVM for this CPU, or CUDA for device="cuda").
        cache: use the on-disk compile cache (GRAPHC_CACHE_DIR; GRAPHC_LOG=cache explains misses).
        cache_dir: overrides the cache location.
        compile_timeout: seconds the compile may take (default GRAPHC_TVM_COMPILE_TIMEOUT, else
            300; 0 for no limit): past it, CompileTimeoutError naming the graph and the stage.
        static_shapes: compile a module per concrete size of the symbolic dims, on first use
            (see `tvm_static`; default GRAPHC_TVM_STATIC_SHAPES, else off: the symbolic module
            is compiled here). `compile_info` is then the latest compile's.
    """

    backend = "tvm"
    _static_default = False

    def __init__(self, graph: Graph, device: str = "cpu", target: Any = None, cache: bool = True,
                 cache_dir: str | None = None, compile_timeout: float | None = None,
                 static_shapes: bool | None = None):
        super().__init__(graph, device)
        tvm = _tvm()
        from .tvm_static import StaticShapes, static_shapes_enabled
        self._tvm = tvm
        self.dev = tvm.cuda(0) if device == "cuda" else tvm.cpu(0)
        self._build_args = (target, device, cache, cache_dir, compile_timeout)
        self.static = StaticShapes(graph, static_shapes_enabled(static_shapes, self._static_default))
        self._mains: dict[Any, Any] = {}
        self.compile_info: dict[str, Any] = {}
        if self.static.enabled:  # compiled on first use; a missing lowering still raises here
            TvmBackend().check_lowering(graph, raise_on_missing=True)
        else:
            self._main = self._compiled(None)
        self.param_names = [p.name for p in graph.params]
        self.params = [self.to_device(p.data) for p in graph.params]

    # ---- device arrays ---------------------------------------------------------------------
    def to_device(self, array: np.ndarray):
        """A TVM array on this executable's device holding `array`."""
        a = np.asarray(array)
        # not np.ascontiguousarray: it turns 0-d arrays into 1-d ones
        return self._tvm.runtime.tensor(a if a.flags.c_contiguous else a.copy(), self.dev)

    def set_params(self, values: dict[str, Any]) -> None:
        """Replaces parameter values (numpy arrays or TVM arrays) kept on the device."""
        for k, v in values.items():
            i = self.param_names.index(k)
            self.params[i] = v if not isinstance(v, np.ndarray) else self.to_device(v)

    def _compiled(self, bind: dict[str, int] | None):
        """The VM `main` of the module for `bind` (None: the symbolic one), compiled once."""
        key = tuple(sorted(bind.items())) if bind else None
        if key not in self._mains:
            from tvm import relax
            self.module, self.compile_info = build(self.graph, *self._build_args, bind=bind)
            self.vm = relax.VirtualMachine(self.module, self.dev)
            self._mains[key] = self.vm["main"]
        return self._mains[key]

    def run_device(self, inputs: Sequence[Any], params: Sequence[Any] | None = None) -> list:
        """Runs on TVM arrays (inputs in graph order, then params); returns TVM arrays."""
        if self.static.enabled:
            main = self._compiled(self.static.bind_for(tuple(tuple(a.shape) for a in inputs)))
        else:
            main = self._main
        res = main(*inputs, *(self.params if params is None else params))
        return list(res)

    def _run(self, feeds, bindings):
        inputs = [self.to_device(feeds[v.name]) for v in self.graph.inputs]
        params = [self.to_device(feeds[n]) if n in feeds else p
                  for n, p in zip(self.param_names, self.params)]
        return [np.asarray(o.numpy()) for o in self.run_device(inputs, params)]


# ---- training ----------------------------------------------------------------------------------

class TvmStepper(Stepper):
    """Runs a training-step graph on TVM; parameters and optimizer state stay TVM arrays.

    Each step passes the carried arrays straight back in as the next step's inputs (the VM
    allocates the outputs, so there is nothing to swap); only the batch goes in from the host and
    only the scalar metrics come back.

    Args:
        graph: the step graph (see `gc.training_step`).
        device: "cpu" or "cuda".
        seed: fed to the graph's rng seed input, if it has one.
        target, cache, cache_dir, compile_timeout: as for `TvmExecutable`.
        static_shapes: as for `TvmExecutable`, but on by default: a training step is fed
            batches of one size, so each size gets a static module at its first step.
    """

    backend = "tvm"

    def __init__(self, graph: Graph, device: str = "cpu", seed: int = 0, target: Any = None,
                 cache: bool = True, cache_dir: str | None = None,
                 compile_timeout: float | None = None, static_shapes: bool | None = None):
        super().__init__(graph, device, seed)
        from .tvm_static import static_shapes_enabled
        self.exe = TvmExecutable(graph, device, target=target, cache=cache, cache_dir=cache_dir,
                                 compile_timeout=compile_timeout,
                                 static_shapes=static_shapes_enabled(static_shapes, True))
        spec = self.spec
        put = self.exe.to_device
        self._carried = {n: put(spec.initial[n]) for n in spec.carried}
        self._seed = put(np.asarray(self.seed, np.int64))
        # per input, in order: where its value comes from each step, by its role
        kinds = {Role.DATA: "batch", Role.GRADIENT: "batch", Role.STEP: "step", Role.LR: "lr",
                 Role.RNG_SEED: "seed", Role.PARAM: "carried", Role.BUFFER: "carried",
                 Role.OPTIMIZER_STATE: "carried"}
        self._sources = []
        for v in graph.inputs:
            if v.role not in kinds:
                raise GraphcError(f"training step {graph.name!r}: input {v.name!r} has role "
                                  f"{v.role}, which a training step does not feed")
            self._sources.append((kinds[v.role], v.name))
        index = {name: i for i, name in enumerate(graph.outputs)}
        self._updates = [(index[o], src) for o, src in spec.updates.items()]
        self._metrics = [(m, index[m]) for m in spec.metrics]

    def _step(self, batch, lr):
        put = self.exe.to_device
        step = put(np.asarray(self.step_count, np.int64))
        lr_t = put(lr)
        args = []
        for kind, n in self._sources:
            args.append(self._carried[n] if kind == "carried" else put(batch[n]) if kind == "batch"
                        else step if kind == "step" else lr_t if kind == "lr" else self._seed)
        outs = self.exe.run_device(args)
        # the VM allocated new outputs, so the step's inputs stay intact for a rollback
        self._previous = dict(self._carried)
        for i, src in self._updates:
            self._carried[src] = outs[i]
        return {m: outs[i].numpy() for m, i in self._metrics}

    def _get(self):
        return {n: np.array(v.numpy(), copy=True) for n, v in self._carried.items()}

    def _set(self, values):
        self._carried.update({n: self.exe.to_device(a) for n, a in values.items()})
        self._previous = None

    def _rollback(self):
        if getattr(self, "_previous", None) is None:
            return False
        self._carried, self._previous = self._previous, None
        return True


class TvmBackend(Backend):
    """Apache TVM Relax compiled with LLVM (or CUDA); training state stays in TVM arrays."""

    name = "tvm"
    devices = ("cpu", "cuda")
    lowering_rule = "tvm"

    def compile(self, graph: Graph, device: str = "cpu", **options: Any) -> Executable:
        return TvmExecutable(graph, device=device, **options)

    def stepper(self, graph: Graph, device: str = "cpu", seed: int = 0, **options: Any) -> Stepper:
        return TvmStepper(graph, device, seed, **options)


register_backend(TvmBackend())
