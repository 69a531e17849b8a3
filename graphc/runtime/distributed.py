"""Data-parallel training on torch.distributed: a split training step with a collective inside.

With one process the Trainer runs the fused step (`gc.training_step`: one graph). With several
(launched by `torchrun --nproc-per-node 2 script.py`, or `graphc train script.py --nproc 2`) it
runs the same program as two parts with an all-reduce between them:

- the gradient part: forward + backward + metrics (`gc.grad` of the fused loss graph), run on this
  rank's shard of the global batch;
- the apply part: the optimizer update given the averaged gradients (`optimizer_graph`: the
  gradients are Role.GRADIENT inputs), run identically on every rank.

Gradients travel as one flat contiguous buffer per dtype (one all-reduce per step; buffers above
`bucket_bytes` are cut into buckets). Every rank gets the same global batch from the same seeded
shuffle, runs its contiguous shard, and sends `(n_local / n_global) * gradient`, so the sum is the
gradient of the mean loss over the whole global batch even when shards differ in size: with a mean
loss, parameters match a one-process run on the same global batch to rounding. Metrics ride in the
same buffer and are averaged the same way. The data order depends on the global step only, so a
run checkpointed with N workers resumes with M. The global batch is unchanged by W, so keep the
learning rate; if you grow the global batch with W instead, scale the learning rate with it
(linear scaling, with warm-up) as a starting point.

torch is an optional extra (`pip install 'graphc[distributed]'`); it is imported here only, lazily.
"""
from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir.errors import GraphcError
from ..ir.feeds import FeedChecker
from ..ir.graph import Graph
from ..ir.roles import Role, gradient_input_name
from ..optim.base import Optimizer
from ..passes.autodiff import grad
from ..passes.pipeline import get_pipeline
from .executable import compile
from .stepper import make_stepper

__all__ = ["DistributedError", "DistributedContext", "SplitStep", "split_training_step",
           "SplitStepper", "require_torch", "init_distributed", "shard_batch", "launch"]

EXTRA_HINT = "pip install 'graphc[distributed]'"
#: gradient buffers above this many bytes are all-reduced in buckets of this size
#: (GRAPHC_DIST_BUCKET_BYTES overrides)
DEFAULT_BUCKET_BYTES = 64 << 20
#: seconds a collective may wait for a lost peer before failing (GRAPHC_DIST_TIMEOUT overrides)
DEFAULT_TIMEOUT_S = 60.0
_RANK_SEED_STRIDE = 1_000_003  # rank r draws dropout masks from seed + r * stride


class DistributedError(GraphcError, RuntimeError):
    """A data-parallel run failed: torch missing, a lost worker, ranks that diverged."""


def require_torch() -> Any:
    """`torch.distributed`, or DistributedError naming the `graphc[distributed]` extra.

    Example: ``dist = require_torch(); dist.is_available()``.
    """
    try:
        import torch.distributed as dist
    except ImportError as exc:
        raise DistributedError(f"distributed training needs torch, which is not installed ({exc}); "
                               f"install the extra: {EXTRA_HINT}") from None
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed; install the CPU or CUDA "
                               f"wheel from pytorch.org, or the extra: {EXTRA_HINT}")
    return dist


def _env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


@dataclass
class DistributedContext:
    """The process group this rank trains in.

    Attributes:
        rank, world_size: this process's rank and the number of processes.
        backend: "gloo" (cpu) or "nccl" (cuda).
        timeout_s: how long a collective waits for a lost peer before failing.
        bucket_bytes: largest all-reduce message; bigger gradient buffers are bucketed.
    """

    rank: int
    world_size: int
    backend: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    bucket_bytes: int = DEFAULT_BUCKET_BYTES
    owns_group: bool = False
    #: (hostname, pid) of every rank, gathered at start, to name a lost worker later
    peers: "list[tuple[str, int]] | None" = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _dist(self) -> Any:
        return require_torch()

    def lost_ranks(self) -> list[int] | None:
        """Ranks on this host whose process is gone (or a zombie); None when it cannot tell."""
        if not self.peers:
            return None
        import socket
        here, lost, known = socket.gethostname(), [], True
        for r, (host, pid) in enumerate(self.peers):
            if r == self.rank:
                continue
            if host != here:
                known = False
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    alive = f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
            except OSError:
                alive = _pid_exists(pid)
            if not alive:
                lost.append(r)
        return lost if lost or known else None

    def _fail(self, what: str, exc: BaseException) -> DistributedError:
        import time
        lost = self.lost_ranks()
        for _ in range(10):  # a killed peer's sockets close a moment before its process is gone
            if lost:
                break
            time.sleep(0.1)
            lost = self.lost_ranks()
        who = (f"rank {', '.join(map(str, lost))} was lost (its process is gone)" if lost else
               "a worker was lost or stopped responding")
        return DistributedError(
            f"rank {self.rank}/{self.world_size}: {what} failed: {who} (the collective timeout "
            f"is {self.timeout_s:g} s); the others stop too. "
            f"Relaunch with fit(..., resume=<checkpoint>) to continue from the last checkpoint "
            f"(torchrun --max-restarts does it automatically). Cause: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}")

    def _tensor(self, a: np.ndarray) -> Any:
        """`a` as a torch tensor where the collective runs: a view of it for gloo, a copy on this
        rank's GPU for nccl (which reduces only CUDA tensors)."""
        import torch
        t = torch.from_numpy(a)
        if self.backend == "nccl":
            t = t.to(f"cuda:{torch.cuda.current_device()}")
        return t

    def _back(self, t: Any, a: np.ndarray) -> None:
        if self.backend == "nccl":
            a[...] = t.cpu().numpy()

    def allreduce_sum(self, flat: np.ndarray, what: str = "all-reduce") -> np.ndarray:
        """Sums a 1-d array across ranks (in place), in buckets of `bucket_bytes`; returns it."""
        dist = self._dist()
        t = self._tensor(flat)
        step = max(1, self.bucket_bytes // max(flat.itemsize, 1))
        try:
            for start in range(0, flat.size, step):
                dist.all_reduce(t[start:start + step], op=dist.ReduceOp.SUM)
        except Exception as exc:  # gloo raises RuntimeError / DistBackendError on a lost peer
            raise self._fail(what, exc) from None
        self._back(t, flat)
        return flat

    def broadcast(self, arrays: dict[str, np.ndarray], src: int = 0) -> dict[str, np.ndarray]:
        """Rank `src`'s arrays on every rank (one flat buffer per dtype)."""
        dist = self._dist()
        out = {n: np.array(a, copy=True, order="C") for n, a in arrays.items()}
        for dtype, names in _by_dtype(out).items():
            flat = np.concatenate([out[n].reshape(-1) for n in names]) if names else np.zeros(0, dtype)
            t = self._tensor(flat)
            try:
                dist.broadcast(t, src=src)
            except Exception as exc:
                raise self._fail("broadcast of the parameters", exc) from None
            self._back(t, flat)
            _unflatten(flat, names, out)
        return out

    def check_identical(self, arrays: dict[str, np.ndarray], step: int) -> None:
        """Raises DistributedError naming the first tensor whose bytes differ between ranks."""
        import torch
        dist = self._dist()
        names = list(arrays)
        digests = np.array([int.from_bytes(hashlib.blake2b(np.ascontiguousarray(arrays[n]).tobytes(),
                                                           digest_size=7).digest(), "little")
                            for n in names], np.int64)
        mine = self._tensor(digests)
        gathered = [torch.zeros_like(mine) for _ in range(self.world_size)]
        try:
            dist.all_gather(gathered, mine)
        except Exception as exc:
            raise self._fail("the parameter consistency check", exc) from None
        table = np.stack([g.cpu().numpy() for g in gathered])
        for i, n in enumerate(names):
            ranks = [r for r in range(self.world_size) if table[r, i] != table[0, i]]
            if ranks:
                raise DistributedError(
                    f"step {step}: parameter {n!r} differs between rank 0 and rank(s) "
                    f"{', '.join(map(str, ranks))} (the ranks diverged: every rank must apply the same "
                    "averaged gradients; check for rank-dependent code or non-deterministic kernels)")

    def barrier(self, what: str = "barrier") -> None:
        try:
            self._dist().barrier()
        except Exception as exc:
            raise self._fail(what, exc) from None

    def close(self) -> None:
        """Destroys the process group if this context created it."""
        dist = self._dist()
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def init_distributed(mode: Any = "auto", device: str = "cpu",
                     timeout_s: float | None = None) -> DistributedContext | None:
    """The process group for `Trainer(distributed=mode)`, or None for one process.

    Args:
        mode: "auto" (distributed when torchrun set WORLD_SIZE > 1 or a process group with more
            than one rank is already initialised), True (required), False/None (never).
        device: "cpu" selects gloo, "cuda" nccl.
        timeout_s: collective timeout (default GRAPHC_DIST_TIMEOUT or 60 s).

    Raises:
        DistributedError: torch is missing (naming the `graphc[distributed]` extra), or `mode`
            is True outside torchrun.
    """
    if mode is None or mode is False:
        return None
    if mode not in ("auto", True):
        raise ValueError(f"Trainer(distributed=...) must be 'auto', True or False, got {mode!r}")
    world = _env_world_size()
    if mode == "auto" and world <= 1:
        # an already-initialised group (e.g. torch.multiprocessing.spawn) also counts
        import sys
        dist = sys.modules.get("torch.distributed")  # never import torch just to find out
        if dist is not None and dist.is_available() and dist.is_initialized():
            world = dist.get_world_size()
        if world <= 1:
            return None
    dist = require_torch()
    timeout = float(timeout_s if timeout_s is not None
                    else os.environ.get("GRAPHC_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    backend = "nccl" if device == "cuda" else "gloo"
    if backend == "nccl":  # one GPU per process: torchrun's LOCAL_RANK picks it
        import torch
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    owns = False
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ or "RANK" not in os.environ:
            raise DistributedError("Trainer(distributed=True) needs a launcher: run the script with "
                                   "`torchrun --nproc-per-node 2 script.py` or `graphc train script.py "
                                   "--nproc 2` (RANK, WORLD_SIZE, MASTER_ADDR are not set)")
        td = datetime.timedelta(seconds=timeout)
        rank, world = int(os.environ["RANK"]), int(os.environ.get("WORLD_SIZE", "1"))
        # torchrun's agent keeps one store across restarts: a restarted group that read the
        # previous attempt's keys would dial the dead workers' addresses (seen as "Gloo
        # connectFullMesh failed ... Connection refused"), so every attempt gets its own prefix
        agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                              is_master=not agent and rank == 0, timeout=td,
                              **({} if agent else {"multi_tenant": True}))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"graphc/attempt-{attempt}", store)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=td)
        owns = True
        # a group left to interpreter teardown can abort the process ("terminate called without
        # an active exception") after a successful run: close it while Python still runs
        import atexit
        atexit.register(_destroy_group)
    bucket = int(os.environ.get("GRAPHC_DIST_BUCKET_BYTES", DEFAULT_BUCKET_BYTES))
    ctx = DistributedContext(dist.get_rank(), dist.get_world_size(), dist.get_backend(), timeout,
                             bucket, owns_group=owns)
    import socket
    peers: list[Any] = [None] * ctx.world_size
    try:
        dist.all_gather_object(peers, (socket.gethostname(), os.getpid()))
    except Exception as exc:
        raise ctx._fail("the start-up exchange", exc) from None
    ctx.peers = [tuple(p) for p in peers]
    return ctx


def _destroy_group() -> None:
    import sys
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - exiting anyway; a broken group must not mask the real error
        pass


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def shard_batch(batch: dict[str, np.ndarray], rank: int, world_size: int) -> dict[str, np.ndarray]:
    """This rank's contiguous part of a global batch (np.array_split's: sizes differ by <= 1).

    The global batch comes from the same seeded shuffle on every rank and depends on the global
    step only, so the data order does not depend on the number of workers.
    """
    n = len(next(iter(batch.values())))
    sizes = [n // world_size + (1 if r < n % world_size else 0) for r in range(world_size)]
    start = sum(sizes[:rank])
    return {k: v[start:start + sizes[rank]] for k, v in batch.items()}


def _by_dtype(arrays: dict[str, np.ndarray]) -> dict[np.dtype, list[str]]:
    out: dict[np.dtype, list[str]] = {}
    for n, a in arrays.items():
        out.setdefault(np.asarray(a).dtype, []).append(n)
    return out


def _unflatten(flat: np.ndarray, names: list[str], into: dict[str, np.ndarray]) -> None:
    off = 0
    for n in names:
        a = into[n]
        into[n] = flat[off:off + a.size].reshape(a.shape).copy()
        off += a.size


@dataclass
class SplitStep:
    """The training program as two graphs with a collective between them.

    Attributes:
        gradients: forward + backward: inputs batch (+ rng), params as graph params fed by name;
            outputs the metrics, `d_<param>` per trained parameter, and the buffers' new values.
        apply: `optimizer_graph(...)`: params, `grad.<param>` inputs, step, lr -> the update.
        params: trained parameter names, in order.
        metrics: the scalar metrics of the gradient part (loss first).
        buffers: BUFFER name -> the gradient-part output holding its new value (batch norm).
    """

    gradients: Graph
    apply: Graph
    params: list[str]
    metrics: list[str]
    buffers: dict[str, str]


def split_training_step(loss_graph: Graph, params: list[str], optimizer: Optimizer,
                        metrics: list[str], clip_grad_norm: float | None = None,
                        fuse: bool = True, simplify: bool = True) -> SplitStep:
    """The gradient and apply parts of `training_step(loss_graph, params, optimizer)`.

    Returns:
        A SplitStep; running `gradients`, averaging the `d_*` outputs and feeding them to `apply`
        computes what the fused step computes.
    """
    from .training import optimizer_graph
    loss = metrics[0]
    fwd = get_pipeline("fuse-forward").run(loss_graph)[0] if fuse else loss_graph
    gg = grad(fwd, wrt=params, of=loss, simplify=False)
    if simplify:
        gg = get_pipeline("simplify").run(gg)[0]
    trained = set(params)
    buffers = {b: k for k, b in gg.updates.items() if b not in trained and gg.has_value(b)}
    keep = list(metrics) + [f"d_{n}" for n in params] + list(buffers.values())
    gg = gg.prune(keep)
    init = {n: np.asarray(loss_graph.value(n).data) for n in params}
    ag = optimizer_graph(optimizer, init, clip_grad_norm=clip_grad_norm,
                         name=f"{loss_graph.name}_apply")
    return SplitStep(gg, ag, list(params), list(metrics), buffers)


class SplitStepper:
    """Runs a SplitStep with an all-reduce between the parts; the Trainer's stepper across ranks.

    It has a Stepper's interface (`step`, `step_count`, `seed`, `params`, `state_dict`,
    `load_state_dict`, `rollback`), so the Trainer drives it like the fused one; parameters and
    optimizer state live in the apply part's stepper, buffers (batch norm) on the host, local
    to each rank (as PyTorch DDP without SyncBatchNorm).
    """

    def __init__(self, split: SplitStep, ctx: DistributedContext, fused_spec: Any,
                 backend: str = "onnxruntime", device: str = "cpu", seed: int = 0,
                 check_every: int = 0, sync_batchnorm: bool = False):
        self.split, self.ctx, self.spec = split, ctx, fused_spec
        self.sync_batchnorm = bool(sync_batchnorm)
        self.backend, self.device = backend, device
        self.apply = make_stepper(split.apply, backend, device, seed)
        self.exe = compile(split.gradients, backend, device)
        self.seed = int(seed)
        self.check_every = int(check_every)
        gg = split.gradients
        self._batch = [v.name for v in gg.inputs if v.role is Role.DATA]
        self._seed_in = next((v.name for v in gg.inputs if v.role is Role.RNG_SEED), None)
        self._counter_in = next((v.name for v in gg.inputs if v.role is Role.RNG_COUNTER), None)
        self._checker = FeedChecker(gg, self._batch, what="batch input", allow_params=False,
                                    contiguous=True)
        self._buffers = {b: np.array(fused_spec.initial[b], copy=True) for b in split.buffers}
        self._shapes = {n: (tuple(int(d) for d in split.apply.value(n).type.shape),
                            np.dtype(split.apply.value(n).type.dtype)) for n in split.params}
        self.last_allreduce_s = 0.0
        self.allreduce_total_s = 0.0  # summed over steps, for the scaling benchmark
        self.bytes_per_step = 0
        # every rank starts from rank 0's values (seeded init makes them equal; this makes sure)
        self.load_state_dict(ctx.broadcast(self.state_dict()))

    # ---- the Stepper interface --------------------------------------------------------------
    @property
    def step_count(self) -> int:
        return self.apply.step_count

    @step_count.setter
    def step_count(self, value: int) -> None:
        self.apply.step_count = int(value)

    def check_batch(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        return self._checker.check(batch)[0]

    def step(self, batch: dict[str, Any], lr: float) -> dict[str, np.ndarray]:
        """One data-parallel step: `batch` is the GLOBAL batch (the same on every rank); this rank
        runs its shard (`shard_batch`), and the gradients, weighted by this shard's share of the
        examples, are summed across ranks. Returns the metrics averaged over the global batch."""
        import time
        total = len(next(iter(batch.values()))) if batch else 0
        if total == 0:
            raise DistributedError(f"step {self.step_count}: the global batch is empty")
        batch = shard_batch(dict(batch), self.ctx.rank, self.ctx.world_size)
        n = len(next(iter(batch.values())))
        params = self.apply.params()
        grads: dict[str, np.ndarray]
        if n > 0:
            feeds = dict(self.check_batch(batch))
            feeds.update(params)
            feeds.update(self._buffers)
            if self._seed_in:
                feeds[self._seed_in] = np.asarray(self.seed + self.ctx.rank * _RANK_SEED_STRIDE, np.int64)
            if self._counter_in:
                feeds[self._counter_in] = np.asarray(self.step_count, np.int64)
            out = self.exe.run(feeds)
            grads = {p: np.asarray(out[f"d_{p}"]) for p in self.split.params}
            metrics = {m: float(out[m]) for m in self.split.metrics}
            for b, key in self.split.buffers.items():
                self._buffers[b] = np.asarray(out[key])
        else:  # a last global batch smaller than the world: this rank adds nothing
            grads = {p: np.zeros(s, dt) for p, (s, dt) in self._shapes.items()}
            metrics = {m: 0.0 for m in self.split.metrics}
        w = n / total  # the mean loss of the global batch is the share-weighted sum of shard means
        groups = _by_dtype(grads)
        # the metrics (and synced batch-norm statistics) ride in the widest buffer; float64 when
        # every gradient is narrower than float32, so a low-precision loss cannot overflow
        carrier = max(groups, key=lambda d: d.itemsize)
        if carrier.itemsize < 4:
            carrier = np.dtype(np.float64)
        extra = ([(self._buffers[b] * w).reshape(-1) for b in self._buffers] if self.sync_batchnorm
                 else []) + [np.array([metrics[m] * w for m in self.split.metrics])]
        bufs = {}
        for dt in {**groups, carrier: []}:
            parts = [grads[p].reshape(-1) * dt.type(w) for p in groups.get(dt, [])]
            if dt == carrier:
                parts += [e.astype(dt) for e in extra]
            bufs[dt] = np.ascontiguousarray(np.concatenate(parts))
        t0 = time.perf_counter()
        for dt in bufs:
            self.ctx.allreduce_sum(bufs[dt], f"the gradient all-reduce of step {self.step_count}")
        self.last_allreduce_s = time.perf_counter() - t0
        self.allreduce_total_s += self.last_allreduce_s
        self.bytes_per_step = sum(b.nbytes for b in bufs.values())
        tail = bufs[carrier][bufs[carrier].size - len(self.split.metrics):]
        avg = {m: np.asarray(float(v)) for m, v in zip(self.split.metrics, tail)}
        if self.sync_batchnorm and self._buffers:  # running statistics: the example-weighted mean
            off = bufs[carrier].size - len(self.split.metrics) - sum(a.size for a in self._buffers.values())
            for b in list(self._buffers):
                a = self._buffers[b]
                self._buffers[b] = bufs[carrier][off:off + a.size].astype(a.dtype).reshape(a.shape)
                off += a.size
        feeds = {}
        for dt, names in groups.items():
            off = 0
            for p in names:
                size = int(np.prod(self._shapes[p][0], dtype=np.int64))
                feeds[gradient_input_name(p)] = bufs[dt][off:off + size].reshape(self._shapes[p][0])
                off += size
        applied = self.apply.step(feeds, lr)
        avg.update({k: v for k, v in applied.items() if k not in avg})  # grad_norm when clipping
        if self.check_every and self.step_count % self.check_every == 0:
            self.ctx.check_identical(self.apply.params(), self.step_count)
        return {m: avg[m] for m in self.spec.metrics if m in avg}

    def rollback(self) -> bool:
        return self.apply.rollback()

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**self.apply.state_dict(), **{b: np.array(a, copy=True) for b, a in self._buffers.items()}}

    def params(self) -> dict[str, np.ndarray]:
        return {**self.apply.params(), **{b: np.array(a, copy=True) for b, a in self._buffers.items()}}

    def load_state_dict(self, values: dict[str, np.ndarray], strict: bool = True) -> None:
        for b in self._buffers:
            if b in values:
                self._buffers[b] = np.array(values[b], copy=True)
        self.apply.load_state_dict({k: v for k, v in values.items() if k not in self._buffers},
                                   strict=strict)


def launch(script: str, nproc: int = 2, args: "list[str] | None" = None, max_restarts: int = 0,
           python: str | None = None) -> int:
    """Runs `script` in `nproc` processes under torchrun on this machine; returns its exit code.

    It is `python -m torch.distributed.run --standalone --nproc-per-node N [--max-restarts R]
    script args...` (one process: `python script args...`, no torch needed). Each process's
    `gc.Trainer(distributed="auto")` then joins the group.

    Raises:
        DistributedError: nproc > 1 and torch is not installed (names the `graphc[distributed]`
            extra); ValueError: nproc < 1 or no such script.

    Example: ``launch("examples/distributed_mlp.py", 2, ["--epochs", "3"])``.
    """
    import importlib.util
    import subprocess
    import sys
    if int(nproc) < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    if not os.path.isfile(script):
        raise ValueError(f"{script}: no such file (graphc train takes a Python training script)")
    py = python or sys.executable
    cmd = [py, script, *(args or [])]
    if int(nproc) > 1:
        if importlib.util.find_spec("torch") is None:
            raise DistributedError(f"--nproc {nproc} needs torch.distributed, which is not installed; "
                                   f"install the extra: {EXTRA_HINT}")
        cmd = [py, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={int(nproc)}",
               f"--max-restarts={int(max_restarts)}", script, *(args or [])]
    return subprocess.call(cmd)
