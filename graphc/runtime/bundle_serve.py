"""`graphc bundle serve DIR`: a demo page that trains a bundle in the browser (onnxruntime-web).

The server (Python's http.server, no dependency) maps
    /                      the demo page (graphc/runtime/js/index.html)
    /graphc-train.mjs      the driver;  /demo.mjs  the page's script
    /bundle/...            the bundle directory DIR (gc.export_training wrote it)
    /ort/...               onnxruntime-web's dist folder (ort.min.mjs and its .wasm files)
    /data/digits.safetensors   the 8x8 digits, x (N, 64) float32 in [0, 1] and y (N,) int64, split
                           80/20 as `graphc demo mlp` does (x.train, y.train, x.test, y.test)

The page trains the bundle for a few epochs with a live loss plot, reports the test accuracy, and
then classifies digits drawn on a canvas with the trained weights (the bundle's inference model).
"""
from __future__ import annotations

import functools
import http.server
import os
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import js_dir

#: where `.ci/run` (and the README's setup) put onnxruntime-web
DEFAULT_ORT = Path(".ci") / "node" / "node_modules" / "onnxruntime-web" / "dist"


def digits_split(seed: int = 0) -> tuple[dict, dict]:
    """The 8x8 digits shipped with graphc, x (N, 64) float32 in [0, 1] and y int64, split 80/20
    with `seed` (the split `graphc demo mlp` trains and tests on)."""
    from ..datasets import load_digits_arrays
    from .data import train_test_split
    images, target = load_digits_arrays()
    data = {"x": (images.reshape(len(images), 64) / 16.0).astype(np.float32),
            "y": target.astype(np.int64)}
    return train_test_split(data, 0.2, seed=seed)


def digits_trainer(epochs: int = 10, batch_size: int = 32, seed: int = 0, progress: bool = False,
                   backend: str = "onnxruntime", device: str = "cpu"):
    """The digits MLP of `graphc demo mlp` (64-128-10, Adam 3e-3, cosine over `epochs`), untrained.

    Returns (trainer, train, test): train and test are {"x", "y"} numpy arrays (80/20 split).
    """
    import graphc as gc
    from graphc import nn, optim
    train, test = digits_split(seed)
    gc.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    @gc.function(x=gc.spec(("N", 64)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        logits = model(x)
        return {"loss": nn.cross_entropy(logits, y), "logits": logits}
    steps = epochs * -(-len(train["y"]) // batch_size)
    trainer = gc.Trainer(loss_fn, model, optimizer=optim.Adam(3e-3), backend=backend, device=device,
                         schedule=optim.schedules.cosine(3e-3, steps), seed=seed, progress=progress)
    return trainer, train, test


def digits_safetensors(seed: int = 0) -> bytes:
    """The digits split as safetensors bytes: x.train, y.train, x.test, y.test."""
    from safetensors.numpy import save
    train, test = digits_split(seed)
    return save({"x.train": np.ascontiguousarray(train["x"]), "y.train": np.ascontiguousarray(train["y"]),
                 "x.test": np.ascontiguousarray(test["x"]), "y.test": np.ascontiguousarray(test["y"])})


def find_ort_web(ort: str | os.PathLike | None = None) -> Path:
    """onnxruntime-web's dist folder: `ort`, $GRAPHC_ORT_WEB, or .ci/node's; FileNotFoundError
    saying how to get it."""
    # an explicit folder is the only one tried: serving some other copy would hide the mistake
    for cand in ((ort,) if ort else (os.environ.get("GRAPHC_ORT_WEB"), DEFAULT_ORT)):
        if cand and (Path(cand) / "ort.min.mjs").is_file():
            return Path(cand)
    raise FileNotFoundError(
        "the demo page needs onnxruntime-web's dist folder (ort.min.mjs and its .wasm files); "
        "install it with `npm install --ignore-scripts --prefix .ci/node onnxruntime-web@1.30.0` "
        "and pass --ort .ci/node/node_modules/onnxruntime-web/dist (or set GRAPHC_ORT_WEB)"
        + (f"; {ort} has no ort.min.mjs" if ort else ""))


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript",
                      ".wasm": "application/wasm", ".json": "application/json",
                      ".onnx": "application/octet-stream", ".safetensors": "application/octet-stream"}

    def __init__(self, *args: Any, bundle: Path, ort: Path, data: bytes, quiet: bool, **kw: Any):
        self.bundle, self.ort, self.data, self.quiet = bundle, ort, data, quiet
        super().__init__(*args, directory=str(js_dir()), **kw)

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        for prefix, root in (("/bundle/", self.bundle), ("/ort/", self.ort)):
            if clean.startswith(prefix):
                rel = Path(clean[len(prefix):])
                if ".." in rel.parts:
                    return str(root / "__forbidden__")
                return str(root / rel)
        return super().translate_path(path)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/data/digits.safetensors":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(self.data)))
            self.end_headers()
            self.wfile.write(self.data)
            return
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def make_server(directory: str | os.PathLike, port: int = 8000, host: str = "127.0.0.1",
                ort: str | os.PathLike | None = None, quiet: bool = False) -> http.server.HTTPServer:
    """An HTTP server for the demo page over the bundle in `directory` (not yet serving).

    Raises:
        FileNotFoundError: no manifest.json in `directory`, or no onnxruntime-web dist folder.
    """
    bundle = Path(directory)
    if not (bundle / "manifest.json").is_file():
        raise FileNotFoundError(f"{bundle}: no manifest.json; write a bundle with `graphc export-train "
                                f"digits --out {bundle}` or gc.export_training(trainer, {str(bundle)!r})")
    handler = functools.partial(_Handler, bundle=bundle.resolve(), ort=find_ort_web(ort).resolve(),
                                data=digits_safetensors(), quiet=quiet)
    return http.server.ThreadingHTTPServer((host, port), handler)


def serve(directory: str | os.PathLike, port: int = 8000, host: str = "127.0.0.1",
          ort: str | os.PathLike | None = None) -> int:
    """Serves the demo page until Ctrl-C; returns 0."""
    server = make_server(directory, port, host, ort)
    print(f"graphc bundle serve: http://{host}:{server.server_address[1]}/ (bundle {directory}); "
          "Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
