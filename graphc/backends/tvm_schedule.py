"""The TVM compile pipeline and graphc's CPU schedule rules.

The pipeline is Relax's: legalize, fold constants, fuse ops (elementwise epilogues into their
producers), fuse TIR; then every PrimFunc gets a schedule; then the VM lowering passes. On CUDA
it is TVM's default pipeline with dlight's GPU rules. dlight has no CPU rule for matmul or
convolution, so the rules below fill that gap:

- `TiledReduction`: one reduction block (matmul, conv, pool, sum over a leading axis) with its
  fused prologue/epilogue. Register-tiles the output (rows x vector lanes), keeps the tile in a
  local accumulator, moves the reduction loops outside the tile, parallelizes the outer spatial
  loops across cores, and computes elementwise epilogues on each finished tile.
- `Injective`: elementwise, broadcast, transpose chains: inline into one loop nest, parallel
  outer loop, vectorized inner loop.
- `Fallback`: anything else: parallelize the leading spatial loop of each block.

A rule that fails on some function leaves it unscheduled (correct, only slower); GRAPHC_LOG=tvm
prints which rule scheduled each function.
"""
from __future__ import annotations

import os
import re
import sys

import tvm
from tvm import relax, s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.relax.expr_functor import PyExprMutator, mutator
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target

#: bump when the pipeline or rules change what they generate (part of the cache key)
PIPELINE_VERSION = "graphc-tvm-5"

#: rows of the register tile (the vector lanes are the columns)
TILE_ROWS = 4
#: vector registers per tile row
TILE_VECS = 2
#: odd tile widths: unroll (for LLVM's SLP vectorizer) instead of explicit vectors
ODD_UNROLL = True
#: reduction block length: the right operand's (K_BLOCK x vector) panel stays in L1
K_BLOCK = 256
#: below this many output elements a loop is not worth spreading over threads
PARALLEL_MIN = 4096
#: a block is inlined into its consumers only while its expression, with what was already
#: inlined into it, reads at most this many buffer elements; past that it keeps its own loop
#: nest. Inlining copies an expression into every read of it, so a chain whose steps each read
#: the step before twice doubles per step: the gradient of softmax(softmax(x)) over one element
#: fuses some 30 such steps (safe_mul is where(g == 0, 0, g * b)) into one function, and
#: inlining them all made an expression of millions of nodes that TVM's StmtSimplify never
#: finished (the compile "hung" for minutes; with this bound it takes well under a second).
INLINE_MAX_LOADS = 32
_LOAD = re.compile(r"\w\[")


def _log(msg: str) -> None:
    if "tvm" in os.environ.get("GRAPHC_LOG", "").replace(";", ",").split(","):
        print(f"graphc tvm: {msg}", file=sys.stderr)


def _extent(sch, loop):
    ext = sch.get(loop).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


def _lanes(target: Target, dtype_bits: int) -> int:
    """Elements per SIMD register (AVX-512: 512 bits, else AVX2's 256)."""
    from tvm.target.codegen import llvm_cpu_has_features
    try:
        wide = bool(llvm_cpu_has_features(["avx512f"], target))
    except Exception:  # noqa: BLE001 - unknown CPU: assume AVX2
        wide = False
    return max((512 if wide else 256) // dtype_bits, 1)


def _tile_cols(n: int, lanes: int) -> int:
    """Tile width: TILE_VECS or 1 whole vector registers if they divide `n`, else the largest
    divisor of `n` up to TILE_VECS registers. (LLVM splits odd-width vectors such as 24 or 15
    lanes into many small operations: a 120-wide matmul ran 10x slower with them.)"""
    for regs in (TILE_VECS, 1):
        if n % (regs * lanes) == 0:
            return regs * lanes
    return _largest_divisor(n, lanes * TILE_VECS)


def _largest_divisor(n: int, cap: int) -> int:
    for f in range(min(n, cap), 0, -1):
        if n % f == 0:
            return f
    return 1


def _blocks(sch):
    return sch.get_child_blocks(sch.get_sblock("root"))


def _inline_bounded(sch, block) -> bool:
    """compute_inline `block` unless its expression already reads more than INLINE_MAX_LOADS
    buffer elements (see there); returns whether it was inlined."""
    loads = len(_LOAD.findall(str(sch.get(block).body)))
    if loads > INLINE_MAX_LOADS:
        _log(f"not inlining block {sch.get(block).name_hint}: its expression reads {loads} elements")
        return False
    try:
        sch.compute_inline(block)
    except Exception:  # noqa: BLE001 - an output, or a block read by a reduction's init
        return False
    return True


def _vectorize_innermost(sch, block, target) -> None:
    loops = sch.get_loops(block)
    if loops and _extent(sch, loops[-1]) is not None and _extent(sch, loops[-1]) <= 64:
        try:
            sch.vectorize(loops[-1])
        except Exception:  # noqa: BLE001 - e.g. a reduction loop: leave it
            pass


def _injective_nest(sch, block, target) -> None:
    """A spatial block's loops: parallel over the outer ones, vector lanes on the innermost."""
    loops = sch.get_loops(block)
    if not loops:
        return
    lanes = _lanes(target, _dtype_bits(sch, block))
    body = str(sch.get(block).body)
    if body.count("%") + body.count("//") > 8:
        # integer hashing (random_uniform): vectorized 64-bit div/mod takes LLVM many seconds
        # to compile and gains little; threads only
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        n = _extent(sch, fused)
        if n is None or n >= PARALLEL_MIN:
            sch.parallel(sch.split(fused, [None, 1024])[0])
        return
    inner = _extent(sch, loops[-1])
    if inner is not None and inner >= lanes and len(loops) > 1:
        # keep rows apart: vectorize within a row, no div/mod to find the row of an element
        vec = _largest_divisor(inner, lanes)
        if vec >= 4:
            outer = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
            if vec < inner:
                o, v = sch.split(loops[-1], [None, vec])
                sch.vectorize(v)
            else:
                sch.vectorize(loops[-1])
            n = _extent(sch, outer)
            if n is None or n * inner >= PARALLEL_MIN:
                sch.parallel(outer)
            return
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    n = _extent(sch, fused)
    if n is not None and n <= lanes:
        sch.vectorize(fused)
        return
    if n is not None and n < PARALLEL_MIN:
        if n % lanes == 0:
            sch.vectorize(sch.split(fused, [None, lanes])[1])
        return
    if n is not None and n % lanes == 0:
        o, v = sch.split(fused, [None, lanes])
        sch.parallel(o)
        sch.vectorize(v)
        return
    # symbolic or ragged size: parallel chunks; LLVM vectorizes the chunk loop itself
    o, _ = sch.split(fused, [None, 1024])
    sch.parallel(o)


def _has_empty_loop(func) -> bool:
    """Whether a block of `func` reads or writes a buffer with a static dim of 0 (a statically
    empty tensor: its loops have extent 0)."""
    sch = s_tir.Schedule(func)
    for b in _blocks(sch):
        blk = sch.get(b)
        for region in list(blk.reads) + list(blk.writes):
            if any(isinstance(d, tirx.IntImm) and int(d) == 0 for d in region.source.shape):
                return True
    return False


class _Rule(ScheduleRule):
    """Applies `schedule` only on LLVM targets; a failure leaves the function unscheduled."""

    def apply(self, func, target, tunable):
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        if _has_empty_loop(func):
            # a statically empty tensor: nothing to speed up, and TVM cannot vectorize (or
            # split into vectors) a loop of extent 0: left unscheduled, it compiles as is
            return None
        try:
            sch = self.schedule(func, target)
        except Exception as exc:  # noqa: BLE001 - fall through to the next rule
            _log(f"{type(self).__name__} failed on {func.attrs and func.attrs.get('global_symbol')}: "
                 f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}")
            return None
        if sch is not None:
            _log(f"{type(self).__name__} scheduled {func.attrs and func.attrs.get('global_symbol')}")
        return sch

    def schedule(self, func, target):  # pragma: no cover - overridden
        raise NotImplementedError


def _dtype_bits(sch, block) -> int:
    writes = sch.get(block).writes
    return writes[0].source.dtype.bits if writes else 32


class TiledReduction(_Rule):
    """out[s..., i, j] = reduce_r f(...): register tile (i x j) accumulated over r, parallel outside.

    Loop nest (matmul names): for j_o (parallel): [for k_o:] for i_o: for k: for i (unrolled):
    for j (vector). The (i x j) tile accumulates in a small stack buffer that LLVM keeps in
    registers, written back (with the fused epilogue) once per tile. With static shapes and a
    long K, k is blocked instead (k_o) so that the (k x j) panel of the right operand stays in
    L1, accumulating in the output. A symbolic row dim is padded to the tile (pad_einsum) so
    that the hot loop carries no bounds check.
    """

    def schedule(self, func, target):
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        reds = [b for b in infos if not b.is_injective()]
        if len(reds) != 1:
            return None
        main = reds[0]
        kinds = main.dom_kind()
        ns = len(kinds) - len(kinds.lstrip("S"))
        if ns == 0 or set(kinds[ns:]) != {"R"}:
            return None
        idx = infos.index(main)
        # Prologue (padding, transposes feeding the reduction) computed inline where it is read.
        for b in infos[:idx]:
            if not b.is_injective():
                return None
            if "if_then_else" in str(sch.get(b.block_rv).body):
                # zero padding: a bounds check per element in the hot loop costs more than a
                # padded copy made once
                _injective_nest(sch, b.block_rv, target)
                continue
            if not _inline_bounded(sch, b.block_rv):  # keep it as its own nest
                _injective_nest(sch, b.block_rv, target)
        block = main.block_rv
        loops = sch.get_loops(block)
        lanes = _lanes(target, _dtype_bits(sch, block))
        inner = _extent(sch, loops[ns - 1])
        if inner is None:
            return None  # a symbolic innermost dim: vector loads would be gathers
        vec = _tile_cols(inner, lanes)
        factor, padded = 1, False
        # a one-register-wide tile needs more rows to have enough independent FMA chains
        tile_rows = TILE_ROWS * 2 if vec <= lanes else TILE_ROWS
        if ns >= 2:
            rows = _extent(sch, loops[ns - 2])
            if rows is None:
                factor = tile_rows
                pads = [1] * len(kinds)
                pads[ns - 2] = factor
                sch.pad_einsum(block, pads)
                padded = True
                loops = sch.get_loops(block)
                names = [sch.get(b).name_hint for b in _blocks(sch)]
                for b in _blocks(sch)[:names.index(sch.get(block).name_hint)]:
                    # read the inputs in place (the bounds check is invariant in the k loop)
                    # rather than from a padded copy, an extra pass over the input
                    try:
                        sch.compute_inline(b)
                    except Exception:  # noqa: BLE001
                        _injective_nest(sch, b, target)
            else:
                # a short row dim (a 5x5 conv output) is one tile: more independent accumulators
                factor = rows if rows <= 2 * TILE_ROWS else _largest_divisor(rows, tile_rows)
        spatial, reduce = list(loops[:ns]), list(loops[ns:])
        j_o, j_i = sch.split(spatial[-1], [None, vec])
        outer, row = spatial[:-1], None
        if outer and factor > 1:
            outer[-1], row = sch.split(outer[-1], [None, factor])
        k_o = None
        # K blocking accumulates in the output buffer across blocks; in a function with symbolic
        # shapes TVM gives every buffer one alias class, so LLVM could not keep that in
        # registers: there the tile lives in a small stack buffer over the whole K loop instead.
        static = all(_extent(sch, lp) is not None for lp in sch.get_loops(block))
        if len(reduce) == 1 and static and not padded:
            kext = _extent(sch, reduce[0])
            if kext is not None and kext > K_BLOCK:
                k_o, reduce[0] = sch.split(reduce[0], [None, _largest_divisor(kext, K_BLOCK)])
        batch, i_o = (outer[:-1], outer[-1]) if outer else ([], None)
        order = batch + [j_o] + ([k_o] if k_o is not None else []) + ([i_o] if i_o is not None else [])
        order += reduce + ([row] if row is not None else []) + [j_i]
        sch.reorder(*order)
        par = batch + [j_o]
        fused = sch.fuse(*par) if len(par) > 1 else par[0]
        all_blocks = _blocks(sch)
        names = [sch.get(b).name_hint for b in all_blocks]
        epilogue = all_blocks[names.index(sch.get(block).name_hint) + 1:]
        if k_o is None:
            # The tile accumulates in its own buffer. Scope "global", not "local": TVM places
            # only small constant-size *global* allocations on the stack, where LLVM promotes
            # them to registers; a "local" one becomes a heap workspace that stays in memory.
            acc = sch.cache_write(block, 0, "global")
            sch.reverse_compute_at(acc, i_o if i_o is not None else fused, preserve_unit_loops=True)
            _vectorize_innermost(sch, acc, target)
            if padded:
                # A symbolic region would make the tile a heap buffer that LLVM cannot keep in
                # registers; index it modulo the tile so that its shape is static.
                tile = [1] * (ns - 2) + [factor, vec]
                sch.transform_layout(block, ("write", 0), lambda *ix: [
                    ix[i] % tile[i] if tile[i] > 1 else ix[i] * 0 for i in range(len(ix))],
                    assume_injective_transform=True)
        self._epilogue(sch, epilogue, None if padded else fused, target)
        if vec % lanes == 0 or not ODD_UNROLL:
            sch.vectorize(j_i)
        else:
            # an odd width (a 14-wide conv row) as straight-line code for LLVM's SLP vectorizer;
            # an explicit <14 x float> vector is split into many small operations
            sch.unroll(j_i)
        if row is not None:
            sch.unroll(row)
        sch.parallel(fused)
        # last: the schedule primitives above need the block in reduction form
        sch.decompose_reduction(block, k_o if k_o is not None else reduce[0])
        return sch

    @staticmethod
    def _epilogue(sch, blocks, fused, target):
        # Elementwise blocks that do not read the reduction (a momentum term `0.9 * v`) inline
        # into their consumers first; then each consumer of the tile is computed on the tile.
        for b in blocks[:-1]:
            _inline_bounded(sch, b)  # not inlined: an output, a multi-consumer or a large block
        for b in blocks:
            try:
                sch.get(b)
            except Exception:  # noqa: BLE001 - inlined above
                continue
            try:
                if fused is None:
                    raise ValueError("padded: the unpadding copy reads rows of several tiles")
                sch.reverse_compute_at(b, fused, preserve_unit_loops=True)
                _vectorize_innermost(sch, b, target)
            except Exception:  # noqa: BLE001 - its own loop nest
                _injective_nest(sch, b, target)


class Injective(_Rule):
    """Elementwise / broadcast / transpose chains: one loop nest, parallel outside, vector inside."""

    def schedule(self, func, target):
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None or not all(b.is_injective() for b in infos):
            return None
        blocks = [b.block_rv for b in infos]
        # inline everything into the last block(s) that produce outputs, within INLINE_MAX_LOADS
        for b in blocks[:-1]:
            _inline_bounded(sch, b)
        for b in self._live_blocks(sch, blocks):
            _injective_nest(sch, b, target)
        return sch

    @staticmethod
    def _live_blocks(sch, blocks):
        out = []
        for b in blocks:
            try:
                sch.get(b)
                out.append(b)
            except Exception:  # noqa: BLE001 - inlined away
                pass
        return out


class Safe(_Rule):
    """Wraps a dlight rule so that a failure falls through to the next rule."""

    def __init__(self, rule: ScheduleRule):
        self.rule = rule

    def schedule(self, func, target):
        return self.rule.apply(func, target, False)


class Fallback(_Rule):
    """Parallelizes the leading spatial loop of every block (no tiling)."""

    def schedule(self, func, target):
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        done = False
        for b in infos:
            if b.dom_kind()[:1] == "S":
                loops = sch.get_loops(b.block_rv)
                ext = _extent(sch, loops[0])
                if ext is None or ext >= 8:
                    sch.parallel(loops[0])
                    done = True
        return sch if done else None


@mutator
class _EmptyToZeros(PyExprMutator):
    """Replaces every call whose result is a tensor with a static dim of 0 by `R.zeros`: an
    empty tensor holds no data, whatever computed it. TVM fails on some such calls (its
    RewriteDataflowReshape takes a transpose of a (0, 1, 3, 3) tensor for a reshape and rejects
    the shapes)."""

    def __init__(self, mod):
        super().__init__(mod)
        self.mod_ = mod

    def transform(self):
        for gv, func in self.mod_.functions_items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gv, self.visit_expr(func))
        return self.builder_.get()

    def visit_call_(self, call):
        call = super().visit_call_(call)
        t = call.ty
        if isinstance(t, relax.TensorType) and isinstance(t.shape, relax.ShapeExpr):
            dims = list(t.shape.values)
            if all(isinstance(d, tirx.IntImm) for d in dims) and any(int(d) == 0 for d in dims):
                return relax.op.zeros(t.shape, t.dtype)
        return call


@tvm.transform.module_pass(opt_level=0, name="graphc.EmptyToZeros")
def empty_to_zeros(mod, _ctx):
    """Statically empty tensors computed as `R.zeros` (see `_EmptyToZeros`)."""
    return _EmptyToZeros(mod).transform()


def optimize(target: Target) -> tvm.transform.Pass:
    """The Relax pipeline graphc compiles with for `target` (pass it to tvm.compile)."""
    if target.kind.name == "cuda":  # TVM's CUDA pipeline, its dlight rules failing through
        from .tvm_cuda import cuda_pipeline
        return cuda_pipeline(target)
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    from .tvm_tuned import apply_tuned

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod, _ctx):
        with target:
            seq = tvm.transform.Sequential(
                pre_schedule_passes(target)
                # schedules MetaSchedule found faster than the rules below (bench/tune_tvm.py)
                + apply_tuned(target)
                + [dl.ApplyDefaultSchedule(TiledReduction(), Injective(), Safe(dl.cpu.Reduction()),
                                           Fallback())]
                + cpu.dataflow_lower_passes(target)
                + cpu.finalize_passes(target))
            return seq(mod)

    return _pipeline


def pre_schedule_passes(target: Target) -> list:
    """The CPU pipeline's passes before scheduling: legalized, fused PrimFuncs (what the tuning
    database's workloads are made of, see bench/tune_tvm.py)."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu
    return ([relax.transform.DeadCodeElimination()]
            + cpu.library_dispatch_passes(target)
            + cpu.legalize_passes(target)
            # after FoldConstant: a folded empty constant breaks the module's export
            + [empty_to_zeros, relax.transform.LegalizeOps()])
