"""The documentation site builds with `mkdocs build --strict`, offline, and has its pages.

Strict mode turns every warning into a failure: a broken link or anchor, a page missing from the
nav, and a docstring that mkdocstrings cannot parse (a documented parameter the signature lacks).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# the pages of the nav, as the build writes them
PAGES = ["index.html", "getting-started/index.html", "from-pytorch/index.html",
         "pytorch_table/index.html", "from-jax/index.html", "concepts/index.html",
         "api/graphc/index.html", "api/nn/index.html", "api/optim/index.html",
         "api/inspect/index.html", "api/backends/index.html", "api/ir/index.html",
         "api/pipeline/index.html"]


def _missing_tools() -> list[str]:
    missing = []
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # its parent package is not installed
            found = False
        if not found:
            missing.append(module)
    return missing


def _build(out: Path) -> None:
    # NO_MKDOCS_2_WARNING silences Material's banner about MkDocs 2; it is not a build warning
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"


# One test, so that pytest-xdist never builds the site twice in parallel.
def test_docs_build_strict_offline_with_api_pages(tmp_path: Path) -> None:
    missing = _missing_tools()
    if missing:
        pytest.skip(f"the docs tools are not installed ({', '.join(missing)}): "
                    "pip install -e .[docs]")
    site = tmp_path / "site"
    _build(site)

    not_built = [p for p in PAGES if not (site / p).is_file()]
    assert not not_built, f"pages not built: {not_built}"

    # the API pages come from the docstrings (Google sections rendered as tables)
    api = (site / "api/graphc/index.html").read_text(encoding="utf-8")
    for name in ("graphc.compile", "graphc.grad", "graphc.vjp", "graphc.hvp", "graphc.training_step",
                 "graphc.Trainer", "graphc.Trainer.fit", "graphc.export_onnx", "graphc.import_onnx"):
        assert f'id="{name}"' in api, f"{name} has no entry on the API page"
    assert "The gradient graph of a scalar output." in api
    assert "NonFiniteLossError" in api
    for page, name in [("nn", "graphc.nn.Linear"), ("nn", "graphc.nn.cross_entropy"),
                       ("optim", "graphc.optim.Adam"), ("inspect", "graphc.inspect.summary"),
                       ("backends", "graphc.backends.base.Backend"), ("ir", "graphc.ir.roles.Role"),
                       ("ir", "graphc.ir.program.TrainingProgram"),
                       ("pipeline", "graphc.passes.pipeline.Pipeline")]:
        html = (site / "api" / page / "index.html").read_text(encoding="utf-8")
        assert f'id="{name}"' in html, f"{name} has no entry on api/{page}"

    # nothing is fetched when a page is opened: no Google Fonts, no remote scripts or images
    for page in PAGES:
        html = (site / page).read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html, page
        assert 'src="http' not in html, f"{page} loads a script or image from the network"
