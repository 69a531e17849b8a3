"""The demo page of `graphc bundle serve`, driven by headless Chromium (Debian's `chromium`).

Chromium loads the page with `?steps=N`; the page trains the digits bundle N steps with
onnxruntime-web (WASM), writes its result into `<pre id="result">`, draws a test digit on the
canvas and classifies it. The test reads the DOM (`--dump-dom`), compares the last loss with
Python's onnxruntime stepper, and saves a screenshot. Skips, saying why, without chromium or
onnxruntime-web (which `.ci/run` installs into .ci/node).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from graphc.runtime.bundle import export_training
from graphc.runtime.bundle_serve import digits_trainer, make_server

ROOT = Path(__file__).resolve().parents[2]
ORT_WEB = Path(os.environ.get("GRAPHC_NODE_MODULES", ROOT / ".ci" / "node" / "node_modules")) \
    / "onnxruntime-web" / "dist"
STEPS, BATCH, EPOCHS = 100, 32, 10
#: where the test leaves its screenshot for people to look at (git ignores *.png)
SCREENSHOT_DIR = Path(os.environ.get("GRAPHC_TEST_ARTIFACTS", ROOT / "out" / "test-artifacts"))


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (apt-get install chromium); the demo-page test drives it headless")


def _python_losses(steps: int) -> list[float]:
    """The digits MLP on Python's onnxruntime stepper, batches in order (the page's fit, no shuffle)."""
    trainer, train, _ = digits_trainer(EPOCHS, BATCH)
    n, out = len(train["y"]), []
    while len(out) < steps:
        for s in range(0, n, BATCH):
            m = trainer.stepper.step({"x": train["x"][s:s + BATCH], "y": train["y"][s:s + BATCH]},
                                     trainer.schedule(len(out)))
            out.append(float(m["loss"]))
            if len(out) == steps:
                break
    return out


def test_demo_page_trains_in_headless_chromium_like_python(tmp_path):
    chromium = _chromium()
    if not (ORT_WEB / "ort.min.mjs").is_file():
        pytest.skip(f"onnxruntime-web is not in {ORT_WEB}; .ci/run installs it "
                    "(npm install --ignore-scripts --prefix .ci/node onnxruntime-web@1.30.0)")
    trainer, _, _ = digits_trainer(EPOCHS, BATCH)
    export_training(trainer, tmp_path / "bundle", batch_size=BATCH)
    server = make_server(tmp_path / "bundle", port=0, ort=ORT_WEB, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/?steps={STEPS}&digit=3"
        flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=120000",
                 "--window-size=800,900"]
        dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=240)
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOT_DIR / "bundle_demo_page.png"
        subprocess.run(flags + [f"--screenshot={shot}", url], capture_output=True, text=True,
                       timeout=240, cwd=tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    m = re.search(r'<pre id="result">(.*?)</pre>', dom.stdout, re.S)
    assert m and m.group(1), f"the page wrote no result; stderr: {dom.stderr[-2000:]}"
    result = json.loads(html.unescape(m.group(1)))
    assert "error" not in result, result["error"]
    assert result["steps"] == STEPS
    py = _python_losses(STEPS)
    rel = abs(result["finalLoss"] - py[-1]) / py[-1]
    assert rel <= 1e-4, f"page loss {result['finalLoss']} vs Python {py[-1]} (relative {rel:.3g})"
    assert py[-1] < 0.6 * py[0] and result["testAccuracy"] > 0.85
    assert result["guess"] == result["digit"]["label"]  # the drawn test digit is classified
    assert shot.is_file() and shot.stat().st_size > 10_000, "no screenshot"
