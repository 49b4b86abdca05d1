"""pynn.save / pynn.load: bit-exact round trips, optimizer state, refusal of corrupted,
truncated or crafted files (only ModelFileError escapes), atomic and reproducible writes
that keep a file's mode and symbolic links, no pickle."""
import errno
import hashlib
import io
import json
import os
import random
import stat
import struct
import time
import zipfile

import numpy as np
import pytest

import pynn
from pynn import nn, optim
from pynn.io import ModelFileError


def _model():
    pynn.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.GELU(approximate="tanh"), nn.BatchNorm1d(12),
                         nn.Dropout(0.25), nn.Residual(nn.Sequential(nn.Linear(12, 12), nn.Tanh())),
                         nn.Linear(12, 12, bias=False), nn.LeakyReLU(0.3), nn.Flatten(),
                         nn.Identity(), nn.Linear(12, 3), nn.Softmax(dim=1))


def _trained():
    """A model and optimizer after three steps (moved weights, running stats, state)."""
    model = _model()
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 6)).astype(np.float32), rng.integers(0, 3, 40)
    opt = optim.AdamW(model.parameters(), lr=1e-2, amsgrad=True)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(3):
        loss_fn(model(X), y)
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    return model, opt, X


def test_round_trip_is_bit_exact(tmp_path, backend):
    model, opt, X = _trained()
    path = tmp_path / "model.pynn"
    pynn.save(model, path)
    loaded = pynn.load(path)
    assert repr(loaded) == repr(model)
    assert list(loaded.state_dict()) == list(model.state_dict())
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert a.dtype == b.dtype, k
        np.testing.assert_array_equal(a, b, err_msg=k)
    model.eval()
    loaded.eval()
    np.testing.assert_array_equal(model(X), loaded(X))


def test_float64_model_keeps_its_dtype(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2)).double()
    pynn.save(model, tmp_path / "m")
    assert pynn.load(tmp_path / "m")[0].weight.dtype == np.float64


def test_optimizer_state_round_trip_continues_identically(tmp_path, backend):
    model, opt, X = _trained()
    y = np.arange(len(X)) % 3
    pynn.save(model, tmp_path / "ckpt.pynn", optimizer=opt)
    loaded, loaded_opt = pynn.load(tmp_path / "ckpt.pynn", with_optimizer=True)
    assert isinstance(loaded_opt, optim.AdamW)
    assert loaded_opt.param_groups[0]["amsgrad"] is True
    assert loaded_opt.param_groups[0]["betas"] == (0.9, 0.999)
    for m, o in ((model, opt), (loaded, loaded_opt)):
        loss_fn = nn.CrossEntropyLoss()
        pynn.manual_seed(7)
        loss_fn(m(X), y)
        m.backward(loss_fn.backward())
        o.step()
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        np.testing.assert_array_equal(a, b)
    assert pynn.load(tmp_path / "ckpt.pynn", with_optimizer=False) is not None
    pynn.save(model, tmp_path / "plain.pynn")
    assert pynn.load(tmp_path / "plain.pynn", with_optimizer=True)[1] is None


def test_file_has_no_pickle_and_a_readable_manifest(tmp_path):
    path = tmp_path / "m.pynn"
    pynn.save(_model(), path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("pynn.json"))
        for name in names:
            if name.endswith(".npy"):
                assert not zf.read(name)[10:200].count(b"'O'")   # no object dtype
    assert manifest["format"] == "pynn-model" and manifest["model"]["class"] == "Sequential"
    assert "0.weight" in manifest["tensors"]


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "m.pynn"
    pynn.save(_model(), path)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 10):
        (tmp_path / "cut.pynn").write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match="cut.pynn"):
            pynn.load(tmp_path / "cut.pynn")


def test_corrupted_bytes_are_refused(tmp_path):
    path = tmp_path / "m.pynn"
    pynn.save(_model(), path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("weights/0.npy")
    offset = info.header_offset + 30 + len(info.filename) + 200   # inside the array data
    data[offset] ^= 0xFF
    (tmp_path / "bad.pynn").write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        pynn.load(tmp_path / "bad.pynn")
    (tmp_path / "text.pynn").write_text("not a model")
    with pytest.raises(ValueError, match="not a valid pynn model file"):
        pynn.load(tmp_path / "text.pynn")
    with pytest.raises(FileNotFoundError):
        pynn.load(tmp_path / "missing.pynn")


def _rewrite(path, out, edit_manifest=None, extra=None):
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members["pynn.json"])
    if edit_manifest:
        edit_manifest(manifest)
    members["pynn.json"] = json.dumps(manifest).encode()
    members.update(extra or {})
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _same_shape_pair(manifest):
    by_shape = {}
    for key, name in manifest["tensors"].items():
        shape = tuple(manifest["arrays"][name]["shape"])
        if shape in by_shape:
            return by_shape[shape], key
        by_shape[shape] = key
    raise AssertionError("no two weights of one shape")


def _share_array(manifest):
    first, second = _same_shape_pair(manifest)
    manifest["tensors"][second] = manifest["tensors"][first]


@pytest.mark.parametrize("edit,match", [
    (lambda m: m["model"].update({"class": "os.system"}), "unknown module class"),
    (lambda m: m.update({"version": 99}), "unsupported format version"),
    (lambda m: m["arrays"]["weights/0.npy"].update({"shape": [10 ** 6, 10 ** 6]}), "wrong size"),
    (lambda m: m["arrays"]["weights/0.npy"].update({"dtype": "|O"}), "malformed manifest"),
    (lambda m: m["model"]["children"][0][1]["config"].update({"in_features": -1}), "does not match"),
    (lambda m: m["model"]["children"][0][1]["config"].update({"in_features": 10 ** 6,
                                                              "out_features": 10 ** 6}),
     "does not match the stored '0.weight'"),
    (lambda m: m["model"]["children"][1][1]["config"].update({"approximate": 3}), "cannot rebuild"),
    (lambda m: m["tensors"].pop("0.bias"), "missing keys"),
    (lambda m: m["arrays"]["weights/0.npy"].update({"shape": [True, 6]}), "malformed manifest"),
    (lambda m: m["arrays"]["weights/0.npy"].update({"shape": [1] * 40}), "malformed manifest"),
    (lambda m: m["tensors"].update({"0.weight": ["weights/0.npy"]}), "missing array"),
    (_share_array, "the same array"),   # the two weights would alias one array
])
def test_crafted_manifests_are_refused(tmp_path, edit, match):
    path = tmp_path / "m.pynn"
    pynn.save(_model(), path)
    _rewrite(path, tmp_path / "evil.pynn", edit)
    with pytest.raises(ModelFileError, match=match):
        pynn.load(tmp_path / "evil.pynn")


def test_pickled_array_member_is_refused(tmp_path):
    """A crafted file whose checksums are consistent but whose array holds a pickle."""
    import hashlib
    import io

    path = tmp_path / "m.pynn"
    pynn.save(_model(), path)
    buf = io.BytesIO()
    np.save(buf, np.array([print], dtype=object), allow_pickle=True)
    payload = buf.getvalue()

    def point_at_payload(manifest):
        manifest["arrays"]["weights/0.npy"]["sha256"] = hashlib.sha256(payload).hexdigest()

    _rewrite(path, tmp_path / "evil.pynn", point_at_payload, extra={"weights/0.npy": payload})
    with pytest.raises(ModelFileError, match="weights/0.npy"):
        pynn.load(tmp_path / "evil.pynn")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.pynn"
    model = _model()
    pynn.save(model, path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        pynn.save(nn.Sequential(nn.Linear(2, 2)), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.pynn"]   # no temporary file left behind


def test_custom_modules(tmp_path):
    class Scale(nn.Module):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

        def get_config(self):
            return {"factor": self.factor}

    class NoConfig(nn.Module):
        def forward(self, x):
            return x

    model = nn.Sequential(nn.Linear(2, 2), Scale(3.0))
    pynn.save(model, tmp_path / "m.pynn")
    with pytest.raises(ModelFileError, match="custom_modules"):
        pynn.load(tmp_path / "m.pynn")
    loaded = pynn.load(tmp_path / "m.pynn", custom_modules={"Scale": Scale})
    assert loaded[1].factor == 3.0
    with pytest.raises(TypeError, match="get_config"):
        pynn.save(nn.Sequential(NoConfig()), tmp_path / "x.pynn")
    with pytest.raises(TypeError, match="Module"):
        pynn.save("model", tmp_path / "x.pynn")


# -- damaged and forged files: only ModelFileError escapes -------------------------------

def _small_checkpoint(path):
    """A small model with an Adam state (every kind of member and manifest entry)."""
    pynn.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = optim.Adam(model.parameters(), lr=1e-2, amsgrad=True)
    x = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), np.array([0, 1, 0, 1, 1]))
    model.backward(loss_fn.backward())
    opt.step()
    pynn.save(model, path, optimizer=opt)
    return path.read_bytes()


def test_random_bit_flips_raise_only_model_file_error(tmp_path):
    data = _small_checkpoint(tmp_path / "good.pynn")
    bad = tmp_path / "flipped.pynn"
    rnd = random.Random(0)
    refused = 0
    for _ in range(4000):
        flipped = bytearray(data)
        for _ in range(rnd.choice((1, 1, 2, 4))):
            flipped[rnd.randrange(len(flipped))] ^= 1 << rnd.randrange(8)
        bad.write_bytes(bytes(flipped))
        try:
            pynn.load(bad, with_optimizer=True)
        except ModelFileError as exc:
            assert "flipped.pynn" in str(exc)
            refused += 1
        bad.unlink()   # rewriting a file in place is much slower on some file systems
    assert refused > 3000   # most flips are caught; the rest hit bytes nothing reads


def test_every_truncation_raises_model_file_error(tmp_path):
    data = _small_checkpoint(tmp_path / "good.pynn")
    cut = tmp_path / "cut.pynn"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        with pytest.raises(ModelFileError, match="cut.pynn"):
            pynn.load(cut, with_optimizer=True)
        cut.unlink()


def _directory_entry(data, name):
    """Offsets of the local header and of the central directory entry of member `name`."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        pos = zf.start_dir
        for info in zf.infolist():
            if info.filename == name:
                return info.header_offset, pos
            pos += 46 + sum(struct.unpack_from("<HHH", data, pos + 28))
    raise KeyError(name)


# (member, record, field offset, struct format, new value, what the message says); the
# comments say what escaped before load checked for it
@pytest.mark.parametrize("member,record,field,fmt,value,match", [
    ("weights/1.npy", "central", 8, "<H", 0x0001, "encryption"),       # RuntimeError
    ("weights/1.npy", "central", 8, "<H", 0x0041, "encryption"),       # NotImplementedError
    ("weights/1.npy", "central", 8, "<H", 0x0020, "flags"),            # NotImplementedError
    ("weights/1.npy", "central", 6, "<H", 84, "version 8.4"),          # NotImplementedError
    ("pynn.json", "central", 20, "<I", 0x7FFFFFF0, "stored size"),     # a 2 GB buffer
    ("weights/0.npy", "central", 24, "<I", 12345, "stored size"),
    ("weights/0.npy", "central", 42, "<I", 0xFFFFFF00, "past the end"),
    ("pynn.json", "local", 28, "<H", 0x2000, "EOFError"),              # EOFError
])
def test_forged_archive_structure_is_refused(tmp_path, member, record, field, fmt, value, match):
    data = bytearray(_small_checkpoint(tmp_path / "good.pynn"))
    local, central = _directory_entry(bytes(data), member)
    struct.pack_into(fmt, data, (central if record == "central" else local) + field, value)
    (tmp_path / "forged.pynn").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="forged.pynn") as excinfo:
        pynn.load(tmp_path / "forged.pynn", with_optimizer=True)
    assert match in str(excinfo.value)


def test_overlapping_members_are_refused(tmp_path):
    """Members whose data hold the next ones could make the reads add up to many times
    the file; their sizes may not add up to more than the file."""
    path = tmp_path / "m.pynn"
    pynn.save(nn.Sequential(nn.Linear(64, 64)), path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        manifest, weight = zf.getinfo("pynn.json"), zf.getinfo("weights/0.npy")
    _, central = _directory_entry(bytes(data), "pynn.json")
    start = manifest.header_offset + 30 + len(manifest.filename)
    end = weight.header_offset + 30 + len(weight.filename) + weight.file_size
    struct.pack_into("<II", data, central + 20, end - start, end - start)
    (tmp_path / "bad.pynn").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="the members overlap"):
        pynn.load(tmp_path / "bad.pynn")


def test_errors_inside_the_archive_are_chained(tmp_path):
    data = bytearray(_small_checkpoint(tmp_path / "good.pynn"))
    local, _ = _directory_entry(bytes(data), "pynn.json")
    struct.pack_into("<H", data, local + 28, 0x2000)   # the data starts past the end
    (tmp_path / "forged.pynn").write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as excinfo:
        pynn.load(tmp_path / "forged.pynn")
    assert isinstance(excinfo.value.__cause__, EOFError)


def _write_archive(path, manifest_bytes, members):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pynn.json", manifest_bytes)
        for name, data in members.items():
            zf.writestr(name, data)


def test_deeply_nested_manifest_is_refused(tmp_path):
    _write_archive(tmp_path / "deep.pynn", b"[" * 200000 + b"]" * 200000, {})
    with pytest.raises(ModelFileError, match="nested too deeply"):
        pynn.load(tmp_path / "deep.pynn")
    path = tmp_path / "m.pynn"
    pynn.save(nn.Sequential(nn.ReLU()), path)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("pynn.json"))
    spec = {"class": "ReLU", "config": {}}
    for _ in range(150):   # within the JSON decoder's limit, beyond load's
        spec = {"class": "Sequential", "config": {}, "children": [["0", spec]]}
    manifest["model"] = spec
    _write_archive(tmp_path / "deepmodel.pynn", json.dumps(manifest).encode(), {})
    with pytest.raises(ModelFileError, match="nested too deeply"):
        pynn.load(tmp_path / "deepmodel.pynn")


def _nest(depth):
    model = nn.Linear(2, 2)
    for _ in range(depth):
        model = nn.Sequential(model)
    return model


def test_nesting_that_load_accepts_is_what_save_writes(tmp_path):
    model = _nest(40)
    pynn.save(model, tmp_path / "ok.pynn")
    x = np.ones((1, 2), np.float32)
    np.testing.assert_array_equal(pynn.load(tmp_path / "ok.pynn")(x), model(x))
    with pytest.raises(ValueError, match="nested too deeply"):
        pynn.save(_nest(100), tmp_path / "deep.pynn")
    assert not os.path.exists(tmp_path / "deep.pynn")


def _npy_with_header(shape, dtype="<f4"):
    """A .npy member declaring `shape` and holding no data."""
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dtype, tuple(shape))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()


@pytest.mark.parametrize("shape", [[2 ** 32, 2 ** 32], [0, 2 ** 62, 2 ** 62], [2 ** 63]])
def test_shapes_whose_size_overflows_are_refused(tmp_path, shape):
    """An int64 product of [2**32, 2**32] wraps to 0, which a 0-byte member matches."""
    path = tmp_path / "m.pynn"
    pynn.save(_model(), path)
    blob = _npy_with_header(shape)

    def add_array(manifest):
        manifest["arrays"]["weights/99.npy"] = {"dtype": "<f4", "shape": shape,
                                                "sha256": hashlib.sha256(blob).hexdigest()}

    _rewrite(path, tmp_path / "huge.pynn", add_array, extra={"weights/99.npy": blob})
    with pytest.raises(ModelFileError, match="wrong size"):
        pynn.load(tmp_path / "huge.pynn")


# -- optimizer state ---------------------------------------------------------------------

def _state_entry(manifest, index="0"):
    """The [key, value] pairs of a parameter's optimizer state."""
    return manifest["optimizer"]["state"][index]["__dict__"]


def _set_state(key, value):
    def edit(manifest):
        entry = _state_entry(manifest)
        for pair in entry:
            if pair[0] == key:
                pair[1] = value
                return
        entry.append([key, value])
    return edit


def _drop_state(key):
    def edit(manifest):
        manifest["optimizer"]["state"]["0"]["__dict__"] = [
            pair for pair in _state_entry(manifest) if pair[0] != key]
    return edit


def _move_state(new_key):
    def edit(manifest):
        manifest["optimizer"]["state"][new_key] = manifest["optimizer"]["state"].pop("0")
    return edit


def _set_option(key, value):
    def edit(manifest):
        manifest["optimizer"]["param_groups"][0]["__dict__"].append([key, value])
    return edit


def _other_array(manifest):
    """exp_avg of parameter 0 (a weight) set to parameter 1's (a bias: another shape)."""
    _set_state("exp_avg", dict(_state_entry(manifest, "1"))["exp_avg"])(manifest)


@pytest.mark.parametrize("edit,match", [
    (_set_state("step", "one"), "step must be an int"),
    (_set_state("step", -5), "step must be an int"),
    (_set_state("step", True), "step must be an int"),
    (_set_state("step", 2 ** 63), "step must be an int"),
    (_set_state("evil", 1), "AdamW keeps"),
    (_drop_state("exp_avg"), "AdamW keeps"),
    (_set_state("exp_avg", [1.0, 2.0]), "exp_avg must be an array"),
    (_set_state("exp_avg", None), "exp_avg must be an array"),
    (_other_array, "exp_avg must be an array of shape"),
    (_move_state("00"), "does not have"),
    (_move_state("x"), "does not have"),
    (_move_state("999"), "does not have"),
    (_set_option("initial_lr", "x"), "initial_lr"),
    (_set_option("lr", "fast"), "bad options"),
])
def test_crafted_optimizer_state_is_refused(tmp_path, edit, match):
    model, opt, _ = _trained()
    path = tmp_path / "ckpt.pynn"
    pynn.save(model, path, optimizer=opt)
    _rewrite(path, tmp_path / "evil.pynn", edit)
    with pytest.raises(ModelFileError, match=match):
        pynn.load(tmp_path / "evil.pynn", with_optimizer=True)
    assert pynn.load(tmp_path / "evil.pynn") is not None   # the model alone still loads


def test_optimizer_buffer_of_another_dtype_is_refused(tmp_path):
    model, opt, _ = _trained()
    path = tmp_path / "ckpt.pynn"
    pynn.save(model, path, optimizer=opt)
    moment = np.zeros(model[0].weight.shape, np.float64)
    buf = io.BytesIO()
    np.save(buf, moment)
    blob = buf.getvalue()

    def point_at_float64(manifest):
        manifest["arrays"]["optimizer/f64.npy"] = {"dtype": "<f8", "shape": list(moment.shape),
                                                   "sha256": hashlib.sha256(blob).hexdigest()}
        _set_state("exp_avg", {"__array__": "optimizer/f64.npy"})(manifest)

    _rewrite(path, tmp_path / "evil.pynn", point_at_float64, extra={"optimizer/f64.npy": blob})
    with pytest.raises(ModelFileError, match="dtype float32"):
        pynn.load(tmp_path / "evil.pynn", with_optimizer=True)


# -- saving: links, modes, reproducible bytes, error messages ----------------------------

@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "m.pynn"
    pynn.save(_model(), path)
    os.chmod(path, 0o600)
    pynn.save(_model(), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o640)
    pynn.save(nn.Sequential(nn.Linear(2, 2)), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_save_writes_through_a_symbolic_link(tmp_path):
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "real.pynn"
    pynn.save(_model(), target)
    link = tmp_path / "link.pynn"
    os.symlink(target, link)
    pynn.save(nn.Sequential(nn.Linear(2, 2)), link)
    assert os.path.islink(link) and os.readlink(link) == str(target)
    assert isinstance(pynn.load(target)[0], nn.Linear)
    assert sorted(os.listdir(tmp_path)) == ["link.pynn", "store"]
    assert os.listdir(tmp_path / "store") == ["real.pynn"]
    dangling = tmp_path / "dangling.pynn"
    os.symlink(tmp_path / "store" / "new.pynn", dangling)
    pynn.save(_model(), dangling)
    assert os.path.islink(dangling) and os.path.isfile(tmp_path / "store" / "new.pynn")


def test_saves_are_byte_reproducible(tmp_path, monkeypatch):
    model, opt, _ = _trained()
    pynn.save(model, tmp_path / "a.pynn", optimizer=opt)
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)   # another day
    pynn.save(model, tmp_path / "b.pynn", optimizer=opt)
    again, again_opt, _ = _trained()
    pynn.save(again, tmp_path / "c.pynn", optimizer=again_opt)
    data = (tmp_path / "a.pynn").read_bytes()
    assert (tmp_path / "b.pynn").read_bytes() == data
    assert (tmp_path / "c.pynn").read_bytes() == data


def test_save_errors_name_the_callers_path(tmp_path, monkeypatch):
    path = tmp_path / "missing" / "m.pynn"
    with pytest.raises(FileNotFoundError) as excinfo:
        pynn.save(_model(), path)
    assert str(path) in str(excinfo.value) and ".tmp" not in str(excinfo.value)

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link", src, dst)

    monkeypatch.setattr(os, "replace", cross_device)
    path = tmp_path / "m.pynn"
    with pytest.raises(OSError) as excinfo:
        pynn.save(_model(), path)
    assert excinfo.value.errno == errno.EXDEV
    assert str(path) in str(excinfo.value) and ".tmp" not in str(excinfo.value)
    assert os.listdir(tmp_path) == []
