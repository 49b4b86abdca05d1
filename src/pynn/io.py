"""Saving and loading models: the architecture as JSON plus the weights (and optionally
an optimizer's state) in one file, without pickle.

The file is a ZIP archive (uncompressed) holding `pynn.json` (the format version, the
architecture, and for every array its member name, dtype, shape and SHA-256) and one
`.npy` member per array, read with allow_pickle=False. Loading checks everything before
building anything: a truncated, corrupted or crafted file raises ModelFileError (a
ValueError) naming the file, and never executes code or allocates more than the file
declares and holds; the optimizer's options and buffers are checked as the model's are.
Saving writes a temporary file beside the target and renames it over the target, so an
interrupted save leaves any previous file intact; it writes through a symbolic link to
its target and keeps an existing file's permissions. The bytes depend only on the model
(and optimizer): the archive's timestamps are a constant.

    pynn.save(model, "digits.pynn")
    model = pynn.load("digits.pynn")
"""
import hashlib
import io
import json
import math
import os
import stat
import struct
import sys
import zipfile
from collections import OrderedDict

import numpy as np

from pynn import __version__, nn, optim
from pynn.nn.module import Module
from pynn.ops._validate import INT64_MAX

__all__ = ["save", "load", "ModelFileError"]

FORMAT = "pynn-model"
FORMAT_VERSION = 1
MANIFEST = "pynn.json"
_ALLOWED_DTYPES = {np.dtype(t).str for t in (np.float32, np.float64, np.int64, np.int32, np.bool_)}
_MAX_MANIFEST_BYTES = 64 << 20
_NPY_HEADER_MAX = 4096
# JSON levels of the manifest: a module nested in another takes three, so this allows
# models some sixty modules deep, and keeps load's recursion far from Python's limit.
_MAX_NESTING = 200
_MAX_NDIM = 32
# A member as save() writes it: a constant date (the earliest ZIP can hold) makes the
# bytes reproducible; the system and attributes are fixed for the same reason.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ZIP_UNIX = 3
# General-purpose flags a stored member may carry: sizes after the data (0x08) and UTF-8
# names (0x800). The others (encryption, patched data, ...) are features pynn never writes.
_ZIP_FLAGS = 0x08 | 0x800
_ZIP_LOCAL_HEADER = 30
# What zipfile and the file raise on a damaged archive, besides BadZipFile: unsupported
# features (NotImplementedError), encryption (RuntimeError), short data (EOFError), seeks
# to offsets outside the file (OSError, ValueError, OverflowError), bad names (ValueError).
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError,
                   EOFError, OSError, OverflowError, ValueError, struct.error)


class ModelFileError(ValueError):
    """The file is not a valid pynn model file (truncated, corrupted, or not one)."""


def _module_classes():
    return {name: getattr(nn, name) for name in nn.__all__
            if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), Module)}


def _optimizer_classes():
    return {name: getattr(optim, name) for name in ("SGD", "RMSprop", "Adam", "AdamW")}


# -- architecture ------------------------------------------------------------------------

def _describe(module, path="model"):
    name = type(module).__name__
    try:
        config = module.get_config()
    except (AttributeError, NotImplementedError):
        raise TypeError(f"cannot save {path} ({name}): it defines no get_config() returning "
                        "its constructor arguments") from None
    try:
        json.dumps(config)
    except TypeError as exc:
        raise TypeError(f"cannot save {path} ({name}): get_config() must return JSON "
                        f"values ({exc})") from None
    spec = {"class": name, "config": config}
    children = list(module.named_children())
    if children:
        spec["children"] = [[child_name, _describe(child, f"{path}.{child_name}")]
                            for child_name, child in children]
    return spec


# Parameter shapes that built-in layers derive from their configuration. They are checked
# against the stored arrays before a layer is constructed, so that a crafted configuration
# cannot make a constructor allocate and initialise more than the file holds.
_DECLARED_SHAPES = {
    "Linear": lambda c: {"weight": [c["out_features"], c["in_features"]]},
    "BatchNorm1d": lambda c: ({"running_mean": [c["num_features"]]}
                              if c.get("track_running_stats", True) else
                              {"weight": [c["num_features"]]} if c.get("affine", True) else {}),
}


def _check_declared(spec, shapes, prefix, path):
    declared = _DECLARED_SHAPES.get(spec["class"])
    if declared is None:
        return
    try:
        expected = declared(spec["config"])
    except (KeyError, TypeError):
        raise ModelFileError(f"{path}: malformed {spec['class']} configuration") from None
    for name, shape in expected.items():
        if shapes.get(prefix + name) != shape:
            raise ModelFileError(f"{path}: {spec['class']} configuration {spec['config']} does "
                                 f"not match the stored {prefix + name!r}")


def _build(spec, classes, shapes, prefix="", path="model"):
    """Rebuild a module from its description; `shapes` maps state keys to stored shapes."""
    if not isinstance(spec, dict) or not isinstance(spec.get("class"), str) \
            or not isinstance(spec.get("config"), dict):
        raise ModelFileError(f"{path}: malformed module description")
    cls = classes.get(spec["class"])
    if cls is None:
        raise ModelFileError(f"{path}: unknown module class {spec['class']!r}; pass custom "
                             "classes to load(..., custom_modules={name: class})")
    children = spec.get("children", [])
    if not isinstance(children, list) or not all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) for c in children):
        raise ModelFileError(f"{path}: malformed children list")
    built = OrderedDict((name, _build(child, classes, shapes, f"{prefix}{name}.", f"{path}.{name}"))
                        for name, child in children)
    _check_declared(spec, shapes, prefix, path)
    try:
        if spec["class"] == "Sequential":
            module = nn.Sequential(built)
        elif spec["class"] == "ModuleList":
            module = nn.ModuleList(list(built.values()))
        elif spec["class"] == "Residual":
            module = nn.Residual(*built.values())
        else:
            module = cls(**spec["config"])
            for name, child in built.items():
                if dict(module.named_children()).get(name) is None:
                    raise ModelFileError(f"{path}: {spec['class']} has no child {name!r}")
                module.add_module(name, child)
    except ModelFileError:
        raise
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: cannot rebuild {spec['class']} ({exc})") from None
    return module


# -- arrays ------------------------------------------------------------------------------

def _npy_bytes(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array, order="C"), allow_pickle=False)
    return buf.getvalue()


def _nbytes(shape, dtype):
    """The byte size of an array, in Python ints (an int64 product can wrap)."""
    return math.prod(shape) * np.dtype(dtype).itemsize


def _read_npy(data, entry, where):
    """Parse one .npy member, checking it against its manifest entry."""
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ModelFileError(f"{where}: checksum mismatch (the file is corrupted)")
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(buf, max_header_size=_NPY_HEADER_MAX)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(buf, max_header_size=_NPY_HEADER_MAX)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, TypeError, SyntaxError, RecursionError, OSError) as exc:
        # NumPy parses the header with ast.literal_eval and wraps most, not all, of its errors
        raise ModelFileError(f"{where}: bad array header ({exc})") from exc
    shape, fortran, dtype = header
    if fortran or dtype.str != entry["dtype"] or list(shape) != entry["shape"]:
        raise ModelFileError(f"{where}: the array does not match its manifest entry")
    payload = data[buf.tell():]
    if len(payload) != _nbytes(entry["shape"], dtype):
        raise ModelFileError(f"{where}: the array data has the wrong length")
    return np.frombuffer(payload, dtype=dtype).reshape(entry["shape"]).copy()


def _pack_tree(value, arrays, prefix):
    """JSON-ready copy of nested dicts/lists, with arrays moved into `arrays`."""
    if isinstance(value, np.ndarray):
        name = f"{prefix}.npy"
        arrays[name] = value
        return {"__array__": name}
    if isinstance(value, dict):
        return {"__dict__": [[k, _pack_tree(v, arrays, f"{prefix}/{k}")] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_pack_tree(v, arrays, f"{prefix}/{i}") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _unpack_tree(value, arrays):
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            if value["__array__"] not in arrays:
                raise ModelFileError(f"missing array {value['__array__']!r}")
            return arrays[value["__array__"]]
        items = value.get("__dict__")
        if set(value) == {"__dict__"} and isinstance(items, list) and all(
                isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                for item in items):
            return {k: _unpack_tree(v, arrays) for k, v in items}
        raise ModelFileError("malformed optimizer state")
    if isinstance(value, list):
        return [_unpack_tree(v, arrays) for v in value]
    return value


# -- save --------------------------------------------------------------------------------

def save(model, path, optimizer=None):
    """Write `model` (architecture and weights) to `path`, with `optimizer`'s options and
    buffers when given (an optimizer over the model's parameters), atomically. A path that
    is a symbolic link is written through to its target; an existing file keeps its
    permissions. Errors name `path` (an OSError keeps its type)."""
    if not isinstance(model, Module):
        raise TypeError(f"model must be a pynn.nn.Module, not {type(model).__name__}")
    path = os.fspath(path)
    arrays = OrderedDict()
    tensors = OrderedDict()
    for i, (key, value) in enumerate(model.state_dict().items()):
        name = f"weights/{i}.npy"
        arrays[name] = value
        tensors[key] = name
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "pynn_version": __version__,
                "model": _describe(model), "tensors": tensors, "optimizer": None}
    if optimizer is not None:
        manifest["optimizer"] = _describe_optimizer(model, optimizer, arrays)
    entries = {}
    blobs = OrderedDict()
    for name, array in arrays.items():
        if np.dtype(array.dtype).str not in _ALLOWED_DTYPES:
            raise TypeError(f"cannot save an array of dtype {array.dtype} ({name})")
        data = _npy_bytes(array)
        blobs[name] = data
        entries[name] = {"dtype": array.dtype.str, "shape": list(array.shape),
                         "sha256": hashlib.sha256(data).hexdigest()}
    manifest["arrays"] = entries
    if _nesting(manifest) > _MAX_NESTING:
        raise ValueError(f"cannot save {path}: the model is nested too deeply for load() "
                         f"(its description exceeds {_MAX_NESTING} JSON levels)")
    members = OrderedDict([(MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))])
    members.update(blobs)
    try:
        _write_atomically(os.path.realpath(path), members)
    except OSError as exc:
        # the temporary file's name means nothing to the caller
        if exc.errno is None or exc.strerror is None:
            raise type(exc)(f"cannot save {path}: {exc}") from exc
        raise type(exc)(exc.errno, exc.strerror, path) from exc


def _write_atomically(target, members):
    """Write the ZIP archive of `members` ({name: bytes}) to a temporary file beside
    `target`, with the mode of the file it replaces, and rename it over `target`."""
    directory = os.path.dirname(target)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    fd, tmp = _create_temporary(directory, os.path.basename(target))
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.chmod(tmp, mode)
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                for name, data in members.items():
                    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                    info.create_system = _ZIP_UNIX
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)


def _create_temporary(directory, name):
    """A new file beside the target, created with mode 0o666 so that the umask gives it
    the permissions of any file the user creates (tempfile.mkstemp would make it 0o600)."""
    while True:
        tmp = os.path.join(directory, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                           0o666), tmp
        except FileExistsError:
            continue


def _describe_optimizer(model, optimizer, arrays):
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(f"optimizer must be a pynn Optimizer, not {type(optimizer).__name__}")
    name = type(optimizer).__name__
    if _optimizer_classes().get(name) is not type(optimizer):
        raise TypeError(f"cannot save an optimizer of class {name}")
    names = {id(p): key for key, p in model.named_parameters()}
    state = optimizer.state_dict()
    groups = []
    flat = [p for group in optimizer.param_groups for p in group["params"]]
    for group in state["param_groups"]:
        entry = dict(group)
        try:
            entry["params"] = [names[id(flat[i])] for i in group["params"]]
        except KeyError:
            raise ValueError("the optimizer updates parameters that are not the model's") from None
        groups.append(entry)
    packed_state = {str(i): _pack_tree(s, arrays, f"optimizer/{i}")
                    for i, s in state["state"].items()}
    return {"class": name, "param_groups": _pack_tree(groups, arrays, "optimizer/groups"),
            "state": packed_state}


# -- load --------------------------------------------------------------------------------

# the fused Adam kernel takes step + 1 as an int64
_MAX_STEP = INT64_MAX - 1


def _nesting(value):
    """How many lists and dicts deep `value` is (without recursion)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, depth)
        if deepest > _MAX_NESTING:
            break
        stack.extend((item, depth + 1) for item in value)
    return deepest


def _check_manifest(manifest, size):
    """Check the manifest's structure, and that no array declares more bytes than the
    file (of `size` bytes) holds."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError("not a pynn model file (no pynn manifest)")
    if manifest.get("version") != FORMAT_VERSION:
        raise ModelFileError(f"unsupported format version {manifest.get('version')!r} "
                             f"(this pynn reads version {FORMAT_VERSION})")
    arrays = manifest.get("arrays")
    tensors = manifest.get("tensors")
    if not isinstance(arrays, dict) or not isinstance(tensors, dict):
        raise ModelFileError("malformed manifest")
    for name, entry in arrays.items():
        if not (isinstance(entry, dict) and entry.get("dtype") in _ALLOWED_DTYPES
                and isinstance(entry.get("shape"), list) and len(entry["shape"]) <= _MAX_NDIM
                and all(type(s) is int and s >= 0 for s in entry["shape"])
                and isinstance(entry.get("sha256"), str)):
            raise ModelFileError(f"malformed manifest entry for {name!r}")
        # a dimension of 0 makes the size 0, but NumPy still refuses such shapes
        if _nbytes([max(s, 1) for s in entry["shape"]], entry["dtype"]) > sys.maxsize \
                or _nbytes(entry["shape"], entry["dtype"]) > size:
            raise ModelFileError(f"array {name!r} has the wrong size: its shape "
                                 f"{entry['shape']} needs more bytes than the file holds")
    for key, name in tensors.items():
        if not isinstance(name, str) or name not in arrays:
            raise ModelFileError(f"weight {key!r} refers to a missing array")
    if len(set(tensors.values())) != len(tensors):
        raise ModelFileError("two weights refer to the same array")


def load(path, with_optimizer=False, custom_modules=None):
    """Read a model written by save(). Returns the model (in training mode), or
    (model, optimizer) with with_optimizer=True (optimizer None if none was saved).
    custom_modules: {class name: Module subclass} for classes outside pynn.nn; they are
    rebuilt as cls(**get_config()).

    A path that cannot be opened raises what open() raises (FileNotFoundError, ...); any
    problem with the file's contents raises ModelFileError."""
    classes = _module_classes()
    if custom_modules:
        for name, cls in custom_modules.items():
            if not (isinstance(cls, type) and issubclass(cls, Module)):
                raise TypeError(f"custom_modules[{name!r}] must be a Module subclass")
        classes.update(custom_modules)
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            size = os.fstat(f.fileno()).st_size
            with zipfile.ZipFile(f, "r") as zf:
                manifest, arrays = _read_archive(zf, size)
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: {exc}") from exc.__cause__
        except _ARCHIVE_ERRORS as exc:
            raise ModelFileError(f"{path}: not a valid pynn model file "
                                 f"({type(exc).__name__}: {exc})") from exc
    try:
        shapes = {key: manifest["arrays"][name]["shape"]
                  for key, name in manifest["tensors"].items()}
        model = _build(manifest["model"], classes, shapes)
        state = OrderedDict((key, arrays[name]) for key, name in manifest["tensors"].items())
        model.load_state_dict(state, strict=True, assign=True)
        optimizer = None
        if with_optimizer and manifest.get("optimizer") is not None:
            optimizer = _build_optimizer(model, manifest["optimizer"], arrays)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc.__cause__
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ModelFileError(f"{path}: the stored model is inconsistent ({exc})") from exc
    return (model, optimizer) if with_optimizer else model


def _check_member(info, size):
    """Check a member's directory entry before anything of it is read: what pynn writes
    (stored, unencrypted, equal sizes) and within the file's `size` bytes."""
    name = info.filename
    if info.compress_type != zipfile.ZIP_STORED:
        raise ModelFileError(f"member {name!r} is compressed; pynn writes none")
    if info.flag_bits & ~_ZIP_FLAGS:
        raise ModelFileError(f"member {name!r} uses ZIP features that pynn does not write "
                             f"(encryption or others: flags {info.flag_bits:#06x})")
    if info.compress_size != info.file_size:
        raise ModelFileError(f"member {name!r} declares a stored size of {info.compress_size} "
                             f"bytes but {info.file_size} bytes of data")
    if not 0 <= info.header_offset <= size - _ZIP_LOCAL_HEADER - info.compress_size:
        raise ModelFileError(f"member {name!r} extends past the end of the file "
                             "(the file is truncated or corrupted)")


def _read_archive(zf, size):
    infos = {}
    stored = 0
    for info in zf.infolist():
        _check_member(info, size)
        if info.filename in infos:
            raise ModelFileError(f"member {info.filename!r} appears twice")
        infos[info.filename] = info
        stored += _ZIP_LOCAL_HEADER + info.compress_size
    if stored > size:
        # members that overlap could make the reads add up to many times the file
        raise ModelFileError("the members overlap (the file is corrupted)")
    if MANIFEST not in infos:
        raise ModelFileError("not a pynn model file (no pynn manifest)")
    if infos[MANIFEST].file_size > _MAX_MANIFEST_BYTES:
        raise ModelFileError("the manifest is implausibly large")
    try:
        manifest = json.loads(zf.read(MANIFEST).decode("utf-8"))
    except RecursionError as exc:
        raise ModelFileError(f"the manifest is nested too deeply (over {_MAX_NESTING} "
                             "levels)") from exc
    except ValueError as exc:
        raise ModelFileError(f"unreadable manifest ({exc})") from exc
    if _nesting(manifest) > _MAX_NESTING:
        raise ModelFileError(f"the manifest is nested too deeply (over {_MAX_NESTING} levels)")
    _check_manifest(manifest, size)
    arrays = {}
    for name, entry in manifest["arrays"].items():
        info = infos.get(name)
        if info is None:
            raise ModelFileError(f"array {name!r} is missing (the file is truncated?)")
        expected = _nbytes(entry["shape"], entry["dtype"])
        if not expected <= info.file_size <= expected + _NPY_HEADER_MAX:
            raise ModelFileError(f"array {name!r} has the wrong size")
        arrays[name] = _read_npy(zf.read(name), entry, name)
    return manifest, arrays


def _build_optimizer(model, spec, arrays):
    if not isinstance(spec, dict):
        raise ModelFileError("malformed optimizer description")
    name = spec.get("class")
    cls = _optimizer_classes().get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelFileError(f"unknown optimizer class {name!r}")
    params = dict(model.named_parameters())
    groups = _unpack_tree(spec.get("param_groups"), arrays)
    state = spec.get("state")
    if not isinstance(groups, list) or not isinstance(state, dict):
        raise ModelFileError("malformed optimizer description")
    built = []
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list) \
                or not all(isinstance(n, str) for n in group["params"]):
            raise ModelFileError("malformed optimizer param group")
        missing = [n for n in group["params"] if n not in params]
        if missing:
            raise ModelFileError(f"optimizer refers to unknown parameters {missing}")
        options = {k: v for k, v in group.items() if k != "params"}
        built.append(dict(options, params=[params[n] for n in group["params"]]))
    try:
        optimizer = cls(built)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"optimizer: bad options ({exc})") from exc
    flat = [n for group in groups for n in group["params"]]
    loaded = {}
    for key, packed in state.items():
        i = int(key) if key.isdecimal() and key.isascii() else -1
        if str(i) != key or i >= len(flat):
            raise ModelFileError(f"optimizer state for a parameter {key!r} it does not have")
        loaded[i] = _check_optimizer_state(cls, _unpack_tree(packed, arrays),
                                           params[flat[i]], flat[i])
    index_groups = []
    start = 0
    for group in groups:
        index_groups.append(dict(group, params=list(range(start, start + len(group["params"])))))
        start += len(group["params"])
    optimizer.load_state_dict({"state": loaded, "param_groups": index_groups})
    return optimizer


def _check_optimizer_state(cls, entry, param, where):
    """Check the state an optimizer of class `cls` keeps for `param` (named `where`), as
    its state_kinds describe it: its own keys only, a step count in range, buffers of the
    parameter's shape and dtype."""
    name, schema = cls.__name__, cls.state_kinds
    where = f"optimizer state of {where!r}"
    if not isinstance(entry, dict):
        raise ModelFileError(f"{where}: malformed")
    unknown = sorted(set(entry) - set(schema))
    missing = sorted(k for k in set(schema) - set(entry) if schema[k] != "optional")
    if unknown or missing:
        raise ModelFileError(f"{where}: {name} keeps {sorted(schema)}, the file has "
                             f"{sorted(entry)}")
    for key, value in entry.items():
        kind = schema[key]
        if kind == "step":
            if type(value) is not int or not 0 <= value <= _MAX_STEP:
                raise ModelFileError(f"{where}: {key} must be an int in [0, {_MAX_STEP}], "
                                     f"not {value!r:.40}")
        elif not (value is None and kind != "buffer"):
            if not isinstance(value, np.ndarray) or value.shape != param.data.shape \
                    or value.dtype != param.data.dtype:
                found = (f"an array of shape {value.shape} and dtype {value.dtype}"
                         if isinstance(value, np.ndarray) else f"{value!r:.40}")
                raise ModelFileError(f"{where}: {key} must be an array of shape "
                                     f"{param.data.shape} and dtype {param.data.dtype}, "
                                     f"not {found}")
    return entry
