"""python -m pynn: train, info, bench delegation, --help."""
import os
import subprocess
import sys

import numpy as np
import pytest

import pynn
from pynn import cli

SRC = os.path.join(os.path.dirname(__file__), os.pardir, "src")


def test_train_runs_saves_and_reports(tmp_path, capsys):
    out = tmp_path / "digits.pynn"
    plot = tmp_path / "curves.png"
    status = cli.main(["train", "--epochs", "3", "--hidden", "32", "--batch-norm",
                       "--early-stopping", "2", "--warmup", "1", "--backend", "numpy",
                       "--threads", "1", "--no-progress", "--output", str(out),
                       "--plot", str(plot)])
    assert status == 0
    text = capsys.readouterr().out
    assert "Epoch 1/3" in text and "val_accuracy" in text
    assert "test accuracy" in text and f"model saved to {out}" in text
    model = pynn.load(out)
    assert isinstance(model[0], pynn.nn.Linear) and model[0].out_features == 32
    # the standardization is folded into the first layer: raw pixels in, digits out
    X, y = pynn.datasets.load_digits()
    accuracy = np.mean(pynn.predict(model, X).argmax(axis=1) == y)
    assert accuracy > 0.8
    if _has_matplotlib():
        assert plot.exists() and plot.stat().st_size > 0


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_train_options_build_the_requested_model(tmp_path, capsys):
    status = cli.main(["train", "--epochs", "1", "--hidden", "16,8", "--activation", "gelu",
                       "--dropout", "0.2", "--optimizer", "sgd", "--schedule", "step",
                       "--no-standardize", "--val-size", "0", "--output", "", "--plot", ""])
    assert status == 0
    text = capsys.readouterr().out
    assert "(1): GELU(approximate='none')" in text and "(2): Dropout(p=0.2)" in text
    assert "Linear(in_features=8, out_features=10" in text
    assert "val_loss" not in text and "model saved" not in text


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--hidden", "--activation", "--optimizer", "--lr", "--schedule", "--warmup",
                   "--batch-size", "--epochs", "--dropout", "--batch-norm", "--early-stopping",
                   "--seed", "--threads", "--backend", "--output", "--plot", "--progress"):
        assert option in text


def test_bad_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--hidden", "12,x"])
    assert exit_info.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_info_and_no_command(capsys):
    assert cli.main(["info"]) == 0
    assert "backend" in capsys.readouterr().out
    assert cli.main([]) == 2
    assert "train" in capsys.readouterr().out


def test_bench_delegates_to_pynn_bench(monkeypatch):
    import pynn.bench

    seen = []
    monkeypatch.setattr(pynn.bench, "main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["bench", "train", "--quick"]) == 0
    assert seen == [["train", "--quick"]]


@pytest.mark.parametrize("module", ["gemm", "train"])
def test_bench_refuses_zero_rounds(module, capsys):
    import importlib

    bench = importlib.import_module(f"pynn.bench.{module}")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--rounds", "0"])
    assert exc.value.code == 2
    assert "--rounds must be at least 1" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    result = subprocess.run([sys.executable, "-m", "pynn", "train", "--help"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--early-stopping" in result.stdout
