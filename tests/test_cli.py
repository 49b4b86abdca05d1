"""python -m pynn: train, info, bench delegation, --help."""
import os
import subprocess
import sys

import numpy as np
import pytest

import pynn
from pynn import cli

# where the pynn under test was imported from (src in a dev tree, site-packages when
# installed): a subprocess gets the same one, compiled kernels included
SRC = os.path.dirname(os.path.dirname(os.path.abspath(pynn.__file__)))


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


# -- train: paths, bad values and failures, each refused or reported without a traceback --

FAST = ["train", "--epochs", "1", "--hidden", "8", "--no-progress"]


def _usage_error(argv, capsys):
    """Runs `python -m pynn` expecting argparse's usage error before any training; returns
    stderr."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "Epoch" not in captured.out and "Traceback" not in captured.err
    return captured.err


def test_default_plot_path_never_overwrites_a_png_model(tmp_path, capsys):
    out = tmp_path / "model.png"
    assert cli.main(FAST + ["--output", str(out)]) == 0
    assert isinstance(pynn.load(out), pynn.nn.Sequential)
    if _has_matplotlib():
        curves = tmp_path / "model_curves.png"
        assert f"training curves written to {curves}" in capsys.readouterr().out
        assert curves.stat().st_size > 0


@pytest.mark.parametrize("plot", ["model.png", "./model.png", "model"])
def test_plot_onto_the_model_path_is_refused(plot, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _usage_error(FAST + ["--output", "model.png", "--plot", plot], capsys)
    assert "argument --plot:" in err and "overwrite the model" in err


def test_plot_path_without_extension_gets_png(tmp_path, capsys):
    if not _has_matplotlib():
        pytest.skip("matplotlib is not installed")
    assert cli.main(FAST + ["--output", "", "--plot", str(tmp_path / "curves")]) == 0
    assert f"training curves written to {tmp_path / 'curves.png'}" in capsys.readouterr().out
    assert (tmp_path / "curves.png").exists()


def test_missing_output_directories_are_created(tmp_path, capsys):
    out = tmp_path / "new" / "dir" / "m.pynn"
    plot = tmp_path / "other" / "c.png"
    assert cli.main(FAST + ["--output", str(out), "--plot", str(plot)]) == 0
    assert isinstance(pynn.load(out), pynn.nn.Sequential)
    if _has_matplotlib():
        assert plot.exists()


@pytest.mark.parametrize("option", ["--output", "--plot"])
@pytest.mark.parametrize("where", ["directory", "trailing separator", "below a file"])
def test_unwritable_paths_are_refused_before_training(option, where, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    path = {"directory": str(tmp_path),
            "trailing separator": str(tmp_path / "new") + os.sep,
            "below a file": str(tmp_path / "a_file" / "m.pynn")}[where]
    other = "--plot" if option == "--output" else "--output"
    err = _usage_error(FAST + [option, path, other, ""], capsys)
    assert f"argument {option}:" in err
    assert not (tmp_path / "new").exists()


def test_plot_format_is_checked_before_training(tmp_path, capsys):
    if not _has_matplotlib():
        pytest.skip("matplotlib is not installed")
    err = _usage_error(FAST + ["--output", "", "--plot", str(tmp_path / "c.xyz")], capsys)
    assert "cannot write .xyz files" in err


def test_a_failed_plot_warns_and_keeps_the_model(tmp_path, monkeypatch, capsys):
    def fail(history, path=None):
        raise OSError("No space left on device")

    monkeypatch.setattr(pynn.callbacks.History, "plot", fail)
    out = tmp_path / "m.pynn"
    assert cli.main(FAST + ["--output", str(out), "--plot", str(tmp_path / "c.png")]) == 0
    assert isinstance(pynn.load(out), pynn.nn.Sequential)
    err = capsys.readouterr().err
    assert "warning: cannot write the training-curve plot" in err and "No space left" in err


def test_a_failed_save_is_an_error_message(tmp_path, monkeypatch, capsys):
    def fail(model, path, optimizer=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pynn, "save", fail)
    assert cli.main(FAST + ["--output", str(tmp_path / "m.pynn"), "--plot", ""]) == 1
    assert capsys.readouterr().err.startswith("error: cannot save the model to")


@pytest.mark.parametrize("option, value", [
    ("--lr", "-1"), ("--lr", "0"), ("--lr", "nan"), ("--lr", "inf"), ("--lr", "x"),
    ("--momentum", "-1"), ("--momentum", "1.5"), ("--weight-decay", "-1"),
    ("--weight-decay", "inf"), ("--seed", "-1"), ("--seed", "1.5"), ("--warmup", "-3"),
    ("--early-stopping", "-2"), ("--epochs", "0"), ("--batch-size", "x"), ("--threads", "0"),
    ("--dropout", "nan"), ("--label-smoothing", "1"), ("--test-size", "0"),
    ("--test-size", "1"), ("--val-size", "-0.1"), ("--val-size", "1"),
    # in range, but a part of the stratified split would be empty
    ("--test-size", "0.9999"), ("--val-size", "0.9999"),
])
def test_bad_numbers_are_usage_errors(option, value, capsys):
    err = _usage_error(FAST + [option, value, "--output", ""], capsys)
    assert f"argument {option}:" in err


def test_batch_norm_with_single_sample_batches_is_a_usage_error(capsys):
    err = _usage_error(FAST + ["--batch-norm", "--batch-size", "1", "--output", ""], capsys)
    assert "argument --batch-size:" in err and "--batch-norm" in err


def test_help_states_the_test_size_range(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "fraction held out for testing, in (0, 1)" in capsys.readouterr().out


def test_divergence_is_an_error_message_and_saves_nothing(tmp_path, capsys):
    out = tmp_path / "m.pynn"
    assert cli.main(FAST + ["--optimizer", "sgd", "--lr", "1e30", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: training failed, no model saved: ") and "Traceback" not in err
    assert err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize("error, status, message", [
    (ValueError("bad labels"), 1, "error: training failed, no model saved: bad labels"),
    (MemoryError(), 1, "error: training failed, no model saved: MemoryError"),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_training_errors_are_reported_without_a_traceback(error, status, message, monkeypatch,
                                                          capsys):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(pynn, "fit", fail)
    assert cli.main(FAST + ["--output", "", "--plot", ""]) == status
    assert capsys.readouterr().err.strip() == message


def test_a_closed_stdout_pipe_neither_stops_training_nor_loses_the_model(tmp_path):
    out = tmp_path / "m.pynn"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line (`| head -0`)
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    try:
        result = subprocess.run([sys.executable, "-m", "pynn", *FAST, "--epochs", "2",
                                 "--output", str(out), "--plot", ""], env=env,
                                stdout=write_end, stderr=subprocess.PIPE, text=True,
                                timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 0 and result.stderr == ""
    assert isinstance(pynn.load(out), pynn.nn.Sequential)
