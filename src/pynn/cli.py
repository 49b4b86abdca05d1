"""Command line: python -m pynn train | bench | info (also installed as `pynn`).

    python -m pynn train                      an MLP on the shipped 8x8 digits
    python -m pynn train --hidden 256,128 --dropout 0.2 --schedule cosine --epochs 40
    python -m pynn bench [train | gemm | --quick ...]
    python -m pynn info                       version, backend, SIMD target, threads
"""
import argparse
import os
import sys

import numpy as np

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


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _fraction(text):
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


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
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 3e-3 for adam/adamw, 0.1 for sgd, 1e-3 for "
                        "rmsprop)")
    p.add_argument("--momentum", type=float, default=0.9, help="momentum for sgd and rmsprop")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="weight decay (decoupled for adamw)")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                   help="learning-rate schedule over the epochs")
    p.add_argument("--warmup", type=int, default=0, metavar="EPOCHS",
                   help="linear learning-rate warm-up epochs before the schedule")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="mini-batch size")
    p.add_argument("--epochs", type=_positive_int, default=30, help="training epochs")
    p.add_argument("--dropout", type=_fraction, default=0.1,
                   help="dropout probability after each hidden layer")
    p.add_argument("--batch-norm", action="store_true",
                   help="batch normalisation after each hidden activation")
    p.add_argument("--early-stopping", type=int, default=0, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better validation loss and "
                        "restore the best weights (0: off)")
    p.add_argument("--label-smoothing", type=_fraction, default=0.1,
                   help="label smoothing of the cross-entropy loss")
    p.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=True,
                   help="train on features standardized with the training statistics; the "
                        "saved model folds them into its first layer, so it takes raw pixels")
    p.add_argument("--test-size", type=_fraction, default=0.2, help="fraction held out for testing")
    p.add_argument("--val-size", type=_fraction, default=0.1,
                   help="fraction of the training part used for validation (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed for splits, initialisation, "
                   "shuffling and dropout")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for pynn's kernels (default: OMP_NUM_THREADS or all CPUs)")
    p.add_argument("--backend", choices=("native", "numpy"), default=None,
                   help="kernel backend (default: native when built)")
    p.add_argument("--output", default="digits_mlp.pynn", metavar="PATH",
                   help="where to save the trained model ('' to skip)")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help="training-curve PNG, written when matplotlib is installed "
                        "(default: the output path with .png; '' to skip)")
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


def train(args):
    import pynn
    from pynn import callbacks, data, datasets, nn, optim
    from pynn.optim import lr_scheduler

    if args.backend is not None:
        pynn.set_backend(args.backend)
    if args.threads is not None:
        pynn.set_num_threads(args.threads)
    pynn.manual_seed(args.seed)

    X, y = datasets.load_digits()
    X_train, X_test, y_train, y_test = data.train_test_split(
        X, y, test_size=args.test_size, stratify=y, seed=args.seed)
    validation = None
    if args.val_size > 0:
        X_train, X_val, y_train, y_val = data.train_test_split(
            X_train, y_train, test_size=args.val_size, stratify=y_train, seed=args.seed + 1)
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

    model = _build_model(args, nn)
    optimizer = _build_optimizer(args, optim, model.parameters())
    scheduler = _build_schedule(args, lr_scheduler, optimizer)
    cbs = []
    if args.early_stopping > 0:
        cbs.append(callbacks.EarlyStopping(monitor="val_loss" if validation else "loss",
                                           patience=args.early_stopping, restore_best=True))
    print(f"pynn {pynn.__version__} on the {pynn.get_backend()} backend, "
          f"{pynn.get_num_threads()} thread(s)")
    print(f"digits: {len(X_train)} train, {0 if validation is None else len(validation[0])} "
          f"validation, {len(X_test)} test samples; model:")
    print(model)
    history = pynn.fit(model, X_train, y_train,
                       loss=nn.CrossEntropyLoss(label_smoothing=args.label_smoothing),
                       optimizer=optimizer, epochs=args.epochs, batch_size=args.batch_size,
                       validation_data=validation, scheduler=scheduler, callbacks=cbs,
                       progress=args.progress, verbose=1)
    if scaler is not None:
        _fold_standardizer(model[0], scaler)
    result = pynn.evaluate(model, X_test, y_test, loss=nn.CrossEntropyLoss())
    seconds = sum(history.history["time"])
    # Training and validation losses include label smoothing; the test loss is plain
    # cross-entropy, comparable across settings.
    print(f"test accuracy {result['accuracy']:.4f}  test cross-entropy {result['loss']:.4f}  "
          f"({len(history.epoch)} epochs, {seconds:.1f}s of training)")
    if args.output:
        pynn.save(model, args.output)
        print(f"model saved to {args.output}")
    plot_path = args.plot
    if plot_path is None:
        plot_path = (os.path.splitext(args.output)[0] + ".png") if args.output else ""
    if plot_path:
        try:
            history.plot(plot_path)
        except ImportError:
            print("matplotlib is not installed: no training-curve plot", file=sys.stderr)
        else:
            print(f"training curves written to {plot_path}")
    return 0


def main(argv=None):
    """Entry point of `python -m pynn` and the `pynn` script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from pynn.bench import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m pynn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{train,bench,info}")
    _train_parser(sub)
    sub.add_parser("bench", help="benchmarks: native vs NumPy reference vs PyTorch "
                                 "(`python -m pynn bench --help` for options)")
    sub.add_parser("info", help="print the version, backend, SIMD target and threads")
    args = parser.parse_args(argv)
    if args.command == "info":
        import pynn

        pynn.show_config()
        return 0
    if args.command == "train":
        return train(args)
    parser.print_help()
    return 2
