"""Command line: python -m pynn train | bench | info (also installed as `pynn`).

    python -m pynn train                      an MLP on the shipped 8x8 digits
    python -m pynn train --hidden 256,128 --dropout 0.2 --schedule cosine --epochs 40
    python -m pynn bench [train | gemm | --quick ...]
    python -m pynn info                       version, backend, SIMD target, threads
"""
import argparse
import contextlib
import os
import sys

import numpy as np

from pynn.ops._validate import check_float, check_int

ACTIVATIONS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "gelu": "GELU", "silu": "SiLU",
               "tanh": "Tanh", "sigmoid": "Sigmoid"}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("none", "step", "exponential", "cosine", "cosine-restarts", "plateau")
DEFAULT_LR = {"adam": 3e-3, "adamw": 3e-3, "sgd": 0.1, "rmsprop": 1e-3}


def _hidden_sizes(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, "
                                         f"got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def _checked(convert, what, check, **limits):
    """An argparse type: the text converted, then checked by pynn's own validators (the
    ones its functions use, so the CLI refuses what training would refuse)."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        try:
            return check(value, "the value", **limits)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _integer(minimum):
    """An int of at least `minimum`."""
    return _checked(int, "an integer", check_int, minimum=minimum)


def _real(low, high=None, low_open=False, high_open=True):
    """A finite float from `low` to `high` (None: no upper limit); NaN and infinities are
    refused."""
    return _checked(float, "a number", check_float, low=low, high=high, low_open=low_open,
                    high_open=high_open)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where the help text already explains a missing one."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _train_parser(sub):
    p = sub.add_parser(
        "train", help="train an MLP on the shipped 8x8 digits",
        description="Train a multi-layer perceptron on the 8x8 handwritten digits shipped "
                    "with pynn (1797 images, 10 classes): a stratified test split is held "
                    "out, a validation split is taken from the rest, and the model is "
                    "saved with pynn.save. Prints one line per epoch and the test accuracy.",
        formatter_class=_HelpFormatter)
    p.add_argument("--hidden", type=_hidden_sizes, default="128,64", metavar="N[,N...]",
                   help="hidden layer sizes, comma-separated")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu",
                   help="activation after each hidden layer")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer")
    p.add_argument("--lr", type=_real(0.0, low_open=True), default=None,
                   help="learning rate, > 0 (default: 3e-3 for adam/adamw, 0.1 for sgd, 1e-3 "
                        "for rmsprop)")
    p.add_argument("--momentum", type=_real(0.0, 1.0), default=0.9,
                   help="momentum for sgd and rmsprop, in [0, 1)")
    p.add_argument("--weight-decay", type=_real(0.0), default=0.0,
                   help="weight decay, >= 0 (decoupled for adamw)")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                   help="learning-rate schedule over the epochs")
    p.add_argument("--warmup", type=_integer(0), default=0, metavar="EPOCHS",
                   help="linear learning-rate warm-up epochs before the schedule")
    p.add_argument("--batch-size", type=_integer(1), default=32, help="mini-batch size")
    p.add_argument("--epochs", type=_integer(1), default=30, help="training epochs")
    p.add_argument("--dropout", type=_real(0.0, 1.0), default=0.1,
                   help="dropout probability after each hidden layer, in [0, 1)")
    p.add_argument("--batch-norm", action="store_true",
                   help="batch normalisation after each hidden activation")
    p.add_argument("--early-stopping", type=_integer(0), default=0, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better validation loss and "
                        "restore the best weights (0: off)")
    p.add_argument("--label-smoothing", type=_real(0.0, 1.0), default=0.1,
                   help="label smoothing of the cross-entropy loss, in [0, 1)")
    p.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=True,
                   help="train on features standardized with the training statistics; the "
                        "saved model folds them into its first layer, so it takes raw pixels")
    p.add_argument("--test-size", type=_real(0.0, 1.0, low_open=True), default=0.2,
                   help="fraction held out for testing, in (0, 1)")
    p.add_argument("--val-size", type=_real(0.0, 1.0), default=0.1,
                   help="fraction of the training part used for validation, in [0, 1) "
                        "(0: none)")
    p.add_argument("--seed", type=_integer(0), default=0, help="seed for splits, "
                   "initialisation, shuffling and dropout")
    p.add_argument("--threads", type=_integer(1), default=None,
                   help="threads for pynn's kernels (default: OMP_NUM_THREADS or all CPUs)")
    p.add_argument("--backend", choices=("native", "numpy"), default=None,
                   help="kernel backend (default: native when built)")
    p.add_argument("--output", default="digits_mlp.pynn", metavar="PATH",
                   help="file to save the trained model to, checked before training; "
                        "missing parent directories are created ('' to skip)")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help="training-curve image, written when matplotlib is installed, in the "
                        "format its extension names (.png is added to a path without one); "
                        "a plot that cannot be written only warns (default: the output path "
                        "with .png, or with _curves.png when that is the output path; '' to "
                        "skip)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar per epoch (default: when stderr is a terminal)")
    return p


def _build_model(args, nn):
    layers = []
    width = 64
    for size in args.hidden:
        layers.append(nn.Linear(width, size))
        layers.append(getattr(nn, ACTIVATIONS[args.activation])())
        if args.batch_norm:
            layers.append(nn.BatchNorm1d(size))
        if args.dropout > 0:
            layers.append(nn.Dropout(args.dropout))
        width = size
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def _build_optimizer(args, optim, params):
    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    if args.optimizer == "adam":
        return optim.Adam(params, lr=lr, weight_decay=args.weight_decay)
    if args.optimizer == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=args.weight_decay)
    if args.optimizer == "sgd":
        return optim.SGD(params, lr=lr, momentum=args.momentum, nesterov=args.momentum > 0,
                         weight_decay=args.weight_decay)
    return optim.RMSprop(params, lr=lr, momentum=args.momentum, weight_decay=args.weight_decay)


def _build_schedule(args, sched, optimizer):
    span = max(args.epochs - args.warmup, 1)
    schedule = {
        "none": lambda: None,
        "step": lambda: sched.StepLR(optimizer, step_size=max(span // 3, 1), gamma=0.3),
        "exponential": lambda: sched.ExponentialLR(optimizer, gamma=0.01 ** (1.0 / span)),
        "cosine": lambda: sched.CosineAnnealingLR(optimizer, T_max=span),
        "cosine-restarts": lambda: sched.CosineAnnealingWarmRestarts(
            optimizer, T_0=max(span // 3, 1)),
        "plateau": lambda: sched.ReduceLROnPlateau(optimizer, factor=0.3, patience=3),
    }[args.schedule]()
    if args.warmup > 0:
        schedule = sched.LinearWarmup(optimizer, args.warmup, after=schedule)
    return schedule


def _fold_standardizer(linear, scaler):
    """Make `linear` take raw features: W(x - m)/s + b = (W/s) x + (b - (W/s) m)."""
    w = linear.weight.data.astype(np.float64) / scaler.scale_
    b = linear.bias.data.astype(np.float64) - w @ scaler.mean_
    linear.weight.data[...] = w
    linear.bias.data[...] = b


class _UsageError(Exception):
    """A bad option found after parsing (a path, a split of the data): reported before
    training as argparse's usage error, exit status 2."""


def _same_file(a, b):
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def _check_writable(option, path):
    """Refuse, before training, a file path that cannot be written: a directory, a path
    below a file, a directory without write permission. Missing parent directories are
    fine (they are created when the file is written)."""
    if path.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep)) or os.path.isdir(path):
        raise _UsageError(f"argument {option}: {path!r} is a directory; give a file path")
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise _UsageError(f"argument {option}: {path!r} lies below {ancestor!r}, "
                          f"which is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise _UsageError(f"argument {option}: no permission to write in {ancestor!r}")


def _plot_path(args):
    """The training-curve file ('' for none), checked: never the model's file, and in a
    format matplotlib writes (when it is installed)."""
    path = args.plot
    if path is None:
        if not args.output:
            return ""
        stem = os.path.splitext(args.output)[0]
        path = stem + ".png"
        if _same_file(path, args.output):
            path = stem + "_curves.png"
    if not path:
        return ""
    _check_writable("--plot", path)
    if not os.path.splitext(path)[1]:
        path += ".png"  # matplotlib would add it: named here, for the messages and checks
    if args.output and _same_file(path, args.output):
        raise _UsageError(f"argument --plot: {path!r} is the --output path; the plot would "
                          f"overwrite the model")
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        return path  # the plot is skipped with a note after training
    formats = FigureCanvasBase.get_supported_filetypes()
    extension = os.path.splitext(path)[1][1:].lower()
    if extension not in formats:
        raise _UsageError(f"argument --plot: matplotlib cannot write .{extension} files "
                          f"(it writes {', '.join(sorted(formats))})")
    return path


def _split(option, fraction, X, y, seed, data):
    """Stratified (X, y) -> (X_a, X_b, y_a, y_b) with the `fraction` in part b; a
    fraction train_test_split refuses (a part left empty or without every class) is a
    usage error."""
    try:
        return data.train_test_split(X, y, test_size=fraction, stratify=y, seed=seed)
    except ValueError as exc:
        raise _UsageError(f"argument {option}: {fraction} cannot split {len(X)} samples "
                          f"({exc})") from None


def _make_parent(path):
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)


def train(args):
    import pynn
    from pynn import callbacks, data, datasets, nn, optim
    from pynn.optim import lr_scheduler

    if args.output:
        _check_writable("--output", args.output)
        if os.path.exists(args.output) and not os.path.isfile(args.output):
            raise _UsageError(f"argument --output: {args.output!r} exists and is not a "
                              f"regular file ('' skips saving)")
    plot_path = _plot_path(args)
    if args.batch_norm and args.batch_size < 2:
        raise _UsageError("argument --batch-size: --batch-norm needs batches of at least 2 "
                          "samples (batch statistics of one sample are undefined)")
    if args.backend is not None:
        pynn.set_backend(args.backend)
    if args.threads is not None:
        pynn.set_num_threads(args.threads)
    pynn.manual_seed(args.seed)

    X, y = datasets.load_digits()
    X_train, X_test, y_train, y_test = _split("--test-size", args.test_size, X, y, args.seed,
                                              data)
    validation = None
    if args.val_size > 0:
        X_train, X_val, y_train, y_val = _split("--val-size", args.val_size, X_train, y_train,
                                                args.seed + 1, data)
        validation = (X_val, y_val)
    elif args.early_stopping or args.schedule == "plateau":
        print("note: without a validation split, early stopping and the plateau schedule "
              "watch the training loss", file=sys.stderr)

    scaler = None
    if args.standardize:
        scaler = data.Standardizer().fit(X_train)
        X_train = scaler.transform(X_train)
        if validation is not None:
            validation = (scaler.transform(validation[0]), validation[1])

    print(f"pynn {pynn.__version__} on the {pynn.get_backend()} backend, "
          f"{pynn.get_num_threads()} thread(s)")
    try:
        model = _build_model(args, nn)
        optimizer = _build_optimizer(args, optim, model.parameters())
        scheduler = _build_schedule(args, lr_scheduler, optimizer)
        cbs = []
        if args.early_stopping > 0:
            cbs.append(callbacks.EarlyStopping(monitor="val_loss" if validation else "loss",
                                               patience=args.early_stopping,
                                               restore_best=True))
        print(f"digits: {len(X_train)} train, "
              f"{0 if validation is None else len(validation[0])} validation, "
              f"{len(X_test)} test samples; model:")
        print(model)
        history = pynn.fit(model, X_train, y_train,
                           loss=nn.CrossEntropyLoss(label_smoothing=args.label_smoothing),
                           optimizer=optimizer, epochs=args.epochs, batch_size=args.batch_size,
                           validation_data=validation, scheduler=scheduler, callbacks=cbs,
                           progress=args.progress, verbose=1)
        if scaler is not None:
            _fold_standardizer(model[0], scaler)
        result = pynn.evaluate(model, X_test, y_test, loss=nn.CrossEntropyLoss())
    except (FloatingPointError, ValueError, MemoryError) as exc:
        reason = str(exc) or type(exc).__name__
        print(f"error: training failed, no model saved: {reason}", file=sys.stderr)
        return 1
    seconds = sum(history.history["time"])
    # Training and validation losses include label smoothing; the test loss is plain
    # cross-entropy, comparable across settings.
    print(f"test accuracy {result['accuracy']:.4f}  test cross-entropy {result['loss']:.4f}  "
          f"({len(history.epoch)} epochs, {seconds:.1f}s of training)")
    if args.output:
        try:
            _make_parent(args.output)
            pynn.save(model, args.output)
        except OSError as exc:
            print(f"error: cannot save the model to {args.output}: {exc}", file=sys.stderr)
            return 1
        print(f"model saved to {args.output}")
    if plot_path:
        try:
            _make_parent(plot_path)
            history.plot(plot_path)
        except ImportError:
            print("matplotlib is not installed: no training-curve plot", file=sys.stderr)
        except Exception as exc:  # the plot is a by-product: its failure leaves the model
            print(f"warning: cannot write the training-curve plot to {plot_path}: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
        else:
            print(f"training curves written to {plot_path}")
    return 0


class _PipeSafeStdout:
    """sys.stdout while training, so that a reader that goes away (`python -m pynn train |
    head`) ends the printing, not the training: at the first BrokenPipeError the stream's
    file descriptor is pointed at os.devnull, as the Python documentation advises (signal
    module, "Note on SIGPIPE"), so the model is still saved and the flush at exit is quiet."""

    def __init__(self, stream):
        self._stream = stream
        self._broken = False

    def write(self, text):
        if not self._broken:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self):
        if not self._broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()

    def _silence(self):
        self._broken = True
        try:
            fd = self._stream.fileno()
        except (OSError, ValueError):
            return  # not a file descriptor (a test's capture): dropping the text is enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _train_command(args, parser):
    """train(args) with a closed stdout tolerated, and usage errors and Ctrl-C reported
    without a traceback."""
    try:
        if sys.stdout is None:  # started with stdout closed: print() already writes nowhere
            return train(args)
        stdout = _PipeSafeStdout(sys.stdout)
        with contextlib.redirect_stdout(stdout):
            status = train(args)
            stdout.flush()  # a reader gone by now is noticed here, not at interpreter exit
        return status
    except _UsageError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def main(argv=None):
    """Entry point of `python -m pynn` and the `pynn` script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from pynn.bench import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m pynn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{train,bench,info}")
    train_parser = _train_parser(sub)
    sub.add_parser("bench", help="benchmarks: native vs NumPy reference vs PyTorch "
                                 "(`python -m pynn bench --help` for options)")
    sub.add_parser("info", help="print the version, backend, SIMD target and threads")
    args = parser.parse_args(argv)
    if args.command == "info":
        import pynn

        pynn.show_config()
        return 0
    if args.command == "train":
        return _train_command(args, train_parser)
    parser.print_help()
    return 2
