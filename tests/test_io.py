"""pynn.save / pynn.load: bit-exact round trips, optimizer state, refusal of corrupted,
truncated or crafted files, atomic writes, no pickle."""
import json
import os
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
