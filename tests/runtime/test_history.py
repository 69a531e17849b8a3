"""History: series by key and a PNG plot."""
import pytest

from graphc.runtime.history import History


def test_series_and_plot(tmp_path):
    h = History()
    for e in range(1, 4):
        h.append({"epoch": e, "loss": 1.0 / e, "accuracy": 0.5 + e / 10, "val_loss": 1.2 / e,
                  "val_accuracy": 0.4 + e / 10})
    assert h["loss"] == [1.0, 0.5, 1 / 3] and len(h) == 3 and "val_accuracy" in h.keys()
    with pytest.raises(KeyError, match="no metric 'f1'"):
        h["f1"]
    p = h.plot(tmp_path / "curve.png", title="t")
    data = open(p, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    h2 = History.from_dict(h.to_dict())
    assert h2.epochs == h.epochs
    History([{"epoch": 1, "loss": 0.3}]).plot(tmp_path / "loss_only.png")
