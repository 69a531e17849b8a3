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
    graphc export-train TARGET --out DIR   a training bundle for onnxruntime-web/-node
                                     (TARGET: digits, or file.py:name)
    graphc bundle serve DIR          a demo page training the bundle in the browser
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


def _attribute_of_file(target: str, expected: str) -> Any:
    """The object `name` of the Python file in a `path/to/file.py:name` target (the file is run).

    Raises:
        ValueError: not of that form (naming `expected`), no such file, or no such attribute.
    """
    path, sep, name = target.rpartition(":")
    if not sep or not path.endswith(".py"):
        raise ValueError(f"cannot read {target!r}: expected {expected}")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None or spec.loader is None or not Path(path).is_file():
        raise ValueError(f"{path}: no such Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(path).resolve().parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    obj = getattr(module, name, None)
    if obj is None:
        raise ValueError(f"{path} has no attribute {name!r}")
    return obj


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
        # `show` only displays: a constant the text elides is drawn as zeros, not run
        return parse_graph(Path(target).read_text(), elided="zeros")
    obj = _attribute_of_file(target, f"one of {', '.join(models.MODELS)}, path/to/file.py:function, "
                             "a .graph file or an .onnx file")
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
    export = sub.add_parser("export-train", help="write a training bundle (step model, state, "
                            "manifest, inference model) for onnxruntime-web / onnxruntime-node")
    export.add_argument("target", help="digits (the digits MLP), or file.py:name naming a "
                        "gc.Trainer, a step graph, a loss @gc.function / Graph, or a function "
                        "returning one")
    export.add_argument("--out", required=True, help="the bundle directory")
    export.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate for a loss graph")
    export.add_argument("--epochs", type=int, default=10, help="digits: epochs the cosine schedule spans")
    export.add_argument("--batch-size", type=int, default=32, help="the batch size in the manifest")
    bundle = sub.add_parser("bundle", help="work with training bundles")
    bundle_sub = bundle.add_subparsers(dest="bundle_cmd", required=True)
    serve = bundle_sub.add_parser("serve", help="serve a demo page that trains the bundle in "
                                  "the browser (Python's http.server)")
    serve.add_argument("dir", help="a bundle directory written by export-train")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--ort", default=None, help="onnxruntime-web's dist folder (default "
                       "$GRAPHC_ORT_WEB or .ci/node/node_modules/onnxruntime-web/dist)")
    train = sub.add_parser("train", help="run a training script, data-parallel with --nproc N "
                           "(torchrun on this machine; needs graphc[distributed])")
    train.add_argument("script", help="a Python script that trains with gc.Trainer")
    train.add_argument("--nproc", type=int, default=1, help="worker processes (default 1)")
    train.add_argument("--max-restarts", type=int, default=0, help="torchrun restarts after a "
                       "worker fails (the script should resume from its checkpoint)")
    train.epilog = "arguments after -- go to the script: graphc train s.py --nproc 2 -- --epochs 3"
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if argv[:1] == ["train"] and "--" in argv:
        argv, script_args = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = parser.parse_args(argv)
    args.script_args = script_args
    try:
        return _run(args)
    except BrokenPipeError:
        # `graphc show ... | head`: the reader went away; exit quietly, as cat and grep do
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        print(f"graphc {args.cmd}: interrupted", file=sys.stderr)
        return 130


def _export_train(args: argparse.Namespace) -> int:
    """`graphc export-train TARGET --out DIR`: a Trainer (built from a loss graph with Adam when
    TARGET names one) written as a training bundle by gc.export_training."""
    from .runtime.bundle import export_training
    from .runtime.trainer import Trainer
    if args.target == "digits":
        from .runtime.bundle_serve import digits_trainer
        obj: Any = digits_trainer(args.epochs, args.batch_size)[0]
    else:
        obj = _load_object(args.target)
    from .ir.graph import Graph
    from .ir.program import TrainingProgram
    step_graph = isinstance(obj, Graph) and isinstance(getattr(obj, "spec", None), TrainingProgram)
    if not isinstance(obj, Trainer) and not step_graph:
        from .optim import Adam
        obj = Trainer(obj, optimizer=Adam(args.lr), progress=False)
    m = export_training(obj, args.out, batch_size=args.batch_size)
    print(f"wrote {args.out}: step.onnx, state.safetensors ({len(m['params'])} parameters, "
          f"{len(m['state'])} optimizer-state tensors), manifest.json"
          + (", inference.onnx" if m["inference"] else "")
          + f"\n  batch inputs: " + ", ".join(
              f"{i['name']} {i['dtype']}{i['shape']}" for i in m["inputs"] if i["name"] in m["batch"])
          + f"\n  serve a demo page: graphc bundle serve {args.out}")
    return 0


def _load_object(target: str) -> Any:
    """What `file.py:name` names: a Trainer, a step or loss Graph, or a gc.function; a function
    returning one of those is called."""
    from .ir.graph import Graph
    obj = _attribute_of_file(target, "digits or path/to/file.py:name")
    usable = lambda o: isinstance(o, Graph) or hasattr(o, "step_graph") or isinstance(  # noqa: E731
        getattr(o, "graph", None), Graph)
    if not usable(obj) and callable(obj):
        obj = obj()
    if not usable(obj):
        raise ValueError(f"{target}: expected a gc.Trainer, a Graph, a @gc.function or a function "
                         f"returning one, got {type(obj).__name__}")
    return obj


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
        if args.cmd == "train":
            from .runtime.distributed import launch
            return launch(args.script, args.nproc, args.script_args, args.max_restarts)
        if args.cmd == "export-train":
            return _export_train(args)
        if args.cmd == "bundle":
            from .runtime.bundle_serve import serve
            return serve(args.dir, args.port, args.host, args.ort)
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
