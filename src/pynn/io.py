"""Saving and loading models: the architecture as JSON plus the weights (and optionally
an optimizer's state) in one file, without pickle.

The file is a ZIP archive (uncompressed) holding `pynn.json` (the format version, the
architecture, and for every array its member name, dtype, shape and SHA-256) and one
`.npy` member per array, read with allow_pickle=False. Loading checks everything before
building anything: a truncated, corrupted or crafted file raises ModelFileError (a
ValueError) and never executes code or allocates more than the file declares and holds.
Saving writes a temporary file in the target directory and renames it over the target,
so an interrupted save leaves any previous file intact.

    pynn.save(model, "digits.pynn")
    model = pynn.load("digits.pynn")
"""
import hashlib
import io
import json
import os
import zipfile
from collections import OrderedDict

import numpy as np

from pynn import __version__, nn, optim
from pynn.nn.module import Module

__all__ = ["save", "load", "ModelFileError"]

FORMAT = "pynn-model"
FORMAT_VERSION = 1
MANIFEST = "pynn.json"
_ALLOWED_DTYPES = {np.dtype(t).str for t in (np.float32, np.float64, np.int64, np.int32, np.bool_)}
_MAX_MANIFEST_BYTES = 64 << 20
_NPY_HEADER_MAX = 4096


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
    except (ValueError, OSError) as exc:
        raise ModelFileError(f"{where}: bad array header ({exc})") from None
    shape, fortran, dtype = header
    if fortran or dtype.str != entry["dtype"] or list(shape) != entry["shape"]:
        raise ModelFileError(f"{where}: the array does not match its manifest entry")
    payload = data[buf.tell():]
    if len(payload) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise ModelFileError(f"{where}: the array data has the wrong length")
    return np.frombuffer(payload, dtype=dtype).reshape(shape).copy()


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
        if set(value) == {"__dict__"} and isinstance(value["__dict__"], list):
            return {k: _unpack_tree(v, arrays) for k, v in value["__dict__"]}
        raise ModelFileError("malformed optimizer state")
    if isinstance(value, list):
        return [_unpack_tree(v, arrays) for v in value]
    return value


# -- save --------------------------------------------------------------------------------

def save(model, path, optimizer=None):
    """Write `model` (architecture and weights) to `path`, with `optimizer`'s options and
    buffers when given (an optimizer over the model's parameters), atomically."""
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
    text = json.dumps(manifest, indent=1).encode("utf-8")

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = _create_temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr(MANIFEST, text)
                for name, data in blobs.items():
                    zf.writestr(name, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
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

def _check_manifest(manifest):
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
                and isinstance(entry.get("shape"), list)
                and all(isinstance(s, int) and s >= 0 for s in entry["shape"])
                and isinstance(entry.get("sha256"), str)):
            raise ModelFileError(f"malformed manifest entry for {name!r}")
    for key, name in tensors.items():
        if name not in arrays:
            raise ModelFileError(f"weight {key!r} refers to a missing array")


def load(path, with_optimizer=False, custom_modules=None):
    """Read a model written by save(). Returns the model (in training mode), or
    (model, optimizer) with with_optimizer=True (optimizer None if none was saved).
    custom_modules: {class name: Module subclass} for classes outside pynn.nn; they are
    rebuilt as cls(**get_config())."""
    classes = _module_classes()
    if custom_modules:
        for name, cls in custom_modules.items():
            if not (isinstance(cls, type) and issubclass(cls, Module)):
                raise TypeError(f"custom_modules[{name!r}] must be a Module subclass")
        classes.update(custom_modules)
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path, "r") as zf:
            manifest, arrays = _read_archive(zf)
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path}: not a valid pynn model file ({exc})") from None
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
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
        raise ModelFileError(f"{path}: {exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{path}: the stored model is inconsistent ({exc})") from None
    return (model, optimizer) if with_optimizer else model


def _read_archive(zf):
    infos = {info.filename: info for info in zf.infolist()}
    if MANIFEST not in infos:
        raise ModelFileError("not a pynn model file (no pynn manifest)")
    for info in infos.values():
        if info.compress_type != zipfile.ZIP_STORED:
            raise ModelFileError(f"member {info.filename!r} is compressed; pynn writes none")
    if infos[MANIFEST].file_size > _MAX_MANIFEST_BYTES:
        raise ModelFileError("the manifest is implausibly large")
    try:
        manifest = json.loads(zf.read(MANIFEST).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"unreadable manifest ({exc})") from None
    _check_manifest(manifest)
    arrays = {}
    for name, entry in manifest["arrays"].items():
        info = infos.get(name)
        if info is None:
            raise ModelFileError(f"array {name!r} is missing (the file is truncated?)")
        expected = int(np.prod(entry["shape"], dtype=np.int64)) * np.dtype(entry["dtype"]).itemsize
        if not expected <= info.file_size <= expected + _NPY_HEADER_MAX:
            raise ModelFileError(f"array {name!r} has the wrong size")
        arrays[name] = _read_npy(zf.read(name), entry, name)
    return manifest, arrays


def _build_optimizer(model, spec, arrays):
    if not isinstance(spec, dict):
        raise ModelFileError("malformed optimizer description")
    cls = _optimizer_classes().get(spec.get("class"))
    if cls is None:
        raise ModelFileError(f"unknown optimizer class {spec.get('class')!r}")
    params = dict(model.named_parameters())
    groups = _unpack_tree(spec.get("param_groups"), arrays)
    state = spec.get("state")
    if not isinstance(groups, list) or not isinstance(state, dict):
        raise ModelFileError("malformed optimizer description")
    order = []
    built = []
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise ModelFileError("malformed optimizer param group")
        missing = [n for n in group["params"] if n not in params]
        if missing:
            raise ModelFileError(f"optimizer refers to unknown parameters {missing}")
        order.extend(group["params"])
        options = {k: v for k, v in group.items() if k != "params"}
        built.append(dict(options, params=[params[n] for n in group["params"]]))
    optimizer = cls(built)
    index_groups = []
    start = 0
    for group in groups:
        index_groups.append(dict(group, params=list(range(start, start + len(group["params"])))))
        start += len(group["params"])
    optimizer.load_state_dict({
        "state": {int(i): _unpack_tree(s, arrays) for i, s in state.items()},
        "param_groups": index_groups,
    })
    return optimizer
