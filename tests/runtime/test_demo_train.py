"""`graphc demo mlp`: trains the digits MLP, prints accuracy, writes the PNG and the ONNX file."""
import pytest

from graphc import cli


def test_graphc_demo_mlp_trains_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert cli.main(["demo", "mlp", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and out.strip().splitlines()[-1].startswith("OK")
    acc = float(out.split("test accuracy ")[1].split()[0].rstrip(","))
    assert acc >= 0.96
    assert (tmp_path / "digits_mlp_loss.png").stat().st_size > 5000
    assert (tmp_path / "digits_mlp.onnx").stat().st_size > 30000
