"""The `graphc` command: --version, one-line errors, no tracebacks, no ignored flags."""
from __future__ import annotations

import subprocess
import sys

import pytest

from graphc import cli


def _graphc(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphc", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def test_version_prints_the_package_version():
    r = _graphc("--version")
    assert r.returncode == 0 and r.stdout.startswith("graphc ") and r.stdout.split()[1][0].isdigit()


def test_show_into_a_closed_pipe_exits_quietly():
    r = subprocess.run(f"{sys.executable} -m graphc show transformer_encoder | head -1", shell=True,
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("graph ") and "Traceback" not in r.stderr and "Error" not in r.stderr


def test_html_into_a_missing_directory_is_one_line(tmp_path, capsys):
    assert cli.main(["show", "mlp", "--summary", "--html", str(tmp_path / "no" / "g.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No such file or directory" in err and "no/g.html" in err


def test_a_model_file_that_raises_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('broken model file')\n")
    assert cli.main(["show", f"{bad}:fn"]) == 2
    assert capsys.readouterr().err.strip() == "graphc show: error: RuntimeError: broken model file"


def test_unknown_flags_are_errors():
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "mlp", "--bogus"])
    assert exc.value.code == 2


def test_demo_mlp_uses_the_batch_flag(monkeypatch):
    seen = {}

    def fake(**kw):
        seen.update(kw)
        return 0

    from graphc import demo
    monkeypatch.setitem(demo.DEMOS, "mlp", fake)
    assert cli.main(["demo", "mlp", "--batch", "64", "--quiet"]) == 0
    assert seen["batch"] == 64
