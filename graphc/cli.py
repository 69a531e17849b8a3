"""The `graphc` command.

    graphc demo [mlp|lenet|mlp-forward]   mlp (default): train the digits MLP, report test
                                     accuracy, plot the loss, export ONNX; lenet: build, print,
                                     export LeNet-5 and cross-check onnxruntime vs numpy
    graphc show TARGET               print a graph and its summary; TARGET is a built-in model
                                     (lenet5, mlp, ...), path/to/file.py:function, a .graph
                                     text file written by print(graph), or an .onnx file
        --stats [--nodes] [--bind N=128]   FLOPs, parameters, activation memory
        --dot FILE, --html FILE            write a drawing (HTML: self-contained)
        --grad                             the gradient graph instead
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import sys
from pathlib import Path
from typing import Any


def _demo_names() -> list[str]:
    from .demo import DEMOS
    return list(DEMOS)


def load_graph(target: str) -> Any:
    """The Graph named by a CLI target: a built-in model, `file.py:function`, or a .graph text file.

    Raises:
        SystemExit-friendly ValueError with what was tried.
    """
    from . import models
    from .ir.graph import Graph
    if target in models.MODELS:
        return models.MODELS[target]()
    if target.endswith((".graph", ".txt")) and Path(target).is_file():
        from .frontends.parser import parse_graph
        return parse_graph(Path(target).read_text())
    path, sep, func = target.rpartition(":")
    if not sep or not path.endswith(".py"):
        raise ValueError(f"cannot read {target!r}: expected one of {', '.join(models.MODELS)}, "
                         "path/to/file.py:function, a .graph file or an .onnx file")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None or spec.loader is None or not Path(path).is_file():
        raise ValueError(f"{path}: no such Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(path).resolve().parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    obj = getattr(module, func, None)
    if obj is None:
        raise ValueError(f"{path} has no attribute {func!r}")
    if hasattr(obj, "graph") and isinstance(obj.graph, Graph):  # @gc.function
        return obj.graph
    if isinstance(obj, Graph):
        return obj
    if callable(obj):
        g = obj()
        if isinstance(g, Graph):
            return g
        if hasattr(g, "graph") and isinstance(g.graph, Graph):
            return g.graph
    raise ValueError(f"{target}: expected a Graph, a @gc.function or a function returning a Graph")


def summary(graph: Any) -> str:
    """Counts of inputs, parameters, nodes per op and outputs, as text."""
    lines = [f"graph {graph.name!r}"]
    for v in graph.inputs:
        lines.append(f"  input  {v.name}: {v.type}")
    n_values = sum(int(p.data.size) for p in graph.params if p.data is not None)
    lines.append(f"  params {len(graph.params)} tensors, {n_values:,} values")
    for k, v in graph.outputs.items():
        lines.append(f"  output {k}: {v.type}")
    ops = collections.Counter(n.op.name for n in graph.nodes)
    lines.append(f"  nodes  {len(graph.nodes)}: "
                 + ", ".join(f"{k} x{c}" for k, c in ops.most_common()))
    return "\n".join(lines)


def _bindings(items: list[str]) -> dict[str, int]:
    """{"N": 128} from ["N=128"]; ValueError naming a malformed item."""
    out = {}
    for item in items:
        sym, eq, size = item.partition("=")
        if not eq or not sym.strip().isidentifier() or not size.strip().isdigit():
            raise ValueError(f"--bind {item!r}: expected SYMBOL=SIZE, e.g. N=128")
        out[sym.strip()] = int(size)
    return out


def _show_inspect(graph: Any, args: argparse.Namespace) -> int:
    """`graphc show` with --stats / --dot / --html / --grad (graphc.inspect)."""
    from . import inspect
    bindings = _bindings(args.bind)
    if args.grad:
        from .passes.autodiff import grad
        graph = grad(graph)
    if not args.summary:
        print(graph)
    if args.stats:
        stats = inspect.summary(graph, bindings)
        print(stats)
        if args.nodes:
            print()
            print(stats.node_table())
    else:
        print(summary(graph))
    if args.dot:
        Path(args.dot).write_text(inspect.to_dot(graph))
        print(f"wrote {args.dot}")
    if args.html:
        inspect.to_html(graph, args.html, bindings)
        print(f"wrote {args.html}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `graphc` console command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="graphc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"graphc {_version()}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    demo = sub.add_parser("demo", help="the main job on a built-in example")
    names = _demo_names()
    demo.add_argument("name", nargs="?", default=names[0], choices=names,
                      help=f"which demo (default {names[0]})")
    demo.add_argument("--batch", type=int, default=None,
                      help="mlp: training batch size (default 32); lenet, mlp-forward: size of the "
                      "random input batch (default 8)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data split, weights and "
                      "shuffle (mlp) or of the random input (forward checks)")
    demo.add_argument("--out", default=None, help="directory for the .onnx file (default ./out)")
    demo.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="onnxruntime device")
    demo.add_argument("--quiet", action="store_true", help="do not print the graph")
    show = sub.add_parser("show", help="print a graph and a summary")
    show.add_argument("target", help="built-in model name, file.py:function, a .graph text file "
                      "or an .onnx file")
    show.add_argument("--summary", action="store_true", help="only the summary, not the graph")
    show.add_argument("--stats", action="store_true", help="FLOPs, parameters and activation "
                      "memory (graphc.inspect.summary) instead of the short summary")
    show.add_argument("--nodes", action="store_true", help="with --stats: one row per node")
    show.add_argument("--bind", action="append", default=[], metavar="SYM=SIZE",
                      help="size of a symbolic dim for --stats and --html, e.g. --bind N=128")
    show.add_argument("--grad", action="store_true", help="show the gradient graph gc.grad(graph)")
    show.add_argument("--dot", metavar="FILE", help="also write the graph as Graphviz DOT text")
    show.add_argument("--html", metavar="FILE", help="also write a self-contained HTML drawing")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:
        # `graphc show ... | head`: the reader went away; exit quietly, as cat and grep do
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        print(f"graphc {args.cmd}: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("graphc")
    except PackageNotFoundError:  # running from a source tree that is not installed
        from . import __version__
        return __version__


def _silence_stdout() -> None:
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (e.g. captured by a test)
        pass


def _run(args: argparse.Namespace) -> int:
    from .ir.errors import GraphcError
    try:
        if args.cmd == "demo":
            from .demo import main as run_demo
            return run_demo(args.name, batch=args.batch, seed=args.seed, out_dir=args.out,
                            show_graph=not args.quiet, device=args.device)
        inspecting = args.cmd == "show" and (args.stats or args.dot or args.html or args.grad)
        if args.cmd == "show" and args.target.endswith(".onnx"):
            if not Path(args.target).is_file():
                raise ValueError(f"{args.target}: no such file")
            if inspecting:
                from .frontends.onnx_import import import_onnx
                return _show_inspect(import_onnx(args.target), args)
            from .backends.onnx_inspect import describe_onnx
            print(describe_onnx(args.target, nodes=not args.summary))
            return 0
        if inspecting:
            return _show_inspect(load_graph(args.target), args)
        if args.cmd == "show":
            graph = load_graph(args.target)
            if not args.summary:
                print(graph)
            print(summary(graph))
            return 0
    except (GraphcError, ValueError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        # one line, never a traceback: the message names the file or the problem
        msg = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.filename \
            else str(exc)
        print(f"graphc {args.cmd}: error: {msg}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - e.g. the user's model file raised while loading
        print(f"graphc {args.cmd}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
