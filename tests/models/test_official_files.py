"""Checkpoint files written by the official SimMIM / Swin V2 code (tests/fixtures/official-swinv2/README.md):
read without running code from them, their config gives the geometry, and mimscale's models reproduce the
official loss, encoder features and fine-tuned logits on the official inputs."""

import hashlib
import json
import pickle
import sys
from pathlib import Path

import pytest
import torch

from mimscale.errors import CheckpointError, EvalError
from mimscale.evaluate.finetune import Classifier
from mimscale.evaluate.loading import load_encoder
from mimscale.evaluate.val_loss import load_for_val_loss
from mimscale.models import official

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "official-swinv2"
FULL, RPE, TUNED = (FIX / f"official_{n}.pth" for n in ("pretrain_full", "pretrain_rpe_mlp", "finetune_full"))
EXPECTED = json.loads((FIX / "expected.json").read_text())
# The pre-training geometry, for the rpe_mlp file, which holds only weights (no config).
GEOMETRY = ["model.name=swinv2", "data.img_size=192", "data.mask_patch_size=32", "objective.norm_target=true",
            "objective.norm_target_window=47",
            "model.kwargs={embed_dim: 8, depths: [1, 2, 1, 1], num_heads: [1, 2, 4, 8], window_size: 12}"]
SWIN = dict(embed_dim=8, depths=[1, 2, 1, 1], num_heads=[1, 2, 4, 8], window_size=12)


@pytest.fixture(scope="module")
def inputs():
    return torch.load(FIX / "inputs.pt", weights_only=True)


def test_the_fixture_files_are_the_official_ones():
    for name, digest in EXPECTED["files_sha256"].items():
        assert hashlib.sha256((FIX / name).read_bytes()).hexdigest() == digest


def test_full_official_files_are_read_with_their_config_as_plain_data():
    for path in (FULL, TUNED):
        with pytest.raises(pickle.UnpicklingError):  # what torch's own safe loader says: the reason for ours
            torch.load(path, weights_only=True)
        ckpt = official.read_checkpoint_file(path)
        assert {"model", "optimizer", "lr_scheduler", "scaler", "epoch", "max_accuracy", "config"} <= set(ckpt)
        cfg = ckpt["config"]
        assert type(cfg) is dict and type(cfg["MODEL"]["SWINV2"]) is dict  # no CfgNode subclass left
        assert cfg["MODEL"]["SWINV2"]["EMBED_DIM"] == 8 and ckpt["epoch"] == 0
        assert len(ckpt["optimizer"]["state"]) > 100 and ckpt["scaler"]["scale"] == 65536.0
    assert "yacs" not in sys.modules  # rebuilt without yacs
    assert official.read_checkpoint_file(RPE).keys() == {"model"}  # weights only: torch's own reader


def test_their_config_gives_the_geometry():
    pre = official.run_config(official.read_checkpoint_file(FULL)["config"])
    assert pre == {"model": {"name": "swinv2", "kwargs": {
        "patch_size": 4, "in_chans": 3, "embed_dim": 8, "depths": [1, 2, 1, 1], "num_heads": [1, 2, 4, 8],
        "window_size": 12, "mlp_ratio": 4.0, "qkv_bias": True, "pretrained_window_sizes": [0, 0, 0, 0]}},
        "data": {"img_size": 192, "mask_patch_size": 32, "mask_ratio": 0.6},
        "objective": {"norm_target": True, "norm_target_window": 47}}
    tuned = official.run_config(official.read_checkpoint_file(TUNED)["config"], pretraining=False)
    assert tuned["data"]["img_size"] == 224 and tuned["model"]["kwargs"]["window_size"] == 14
    assert tuned["model"]["kwargs"]["pretrained_window_sizes"] == [12, 12, 12, 6]
    assert tuned["model"]["kwargs"]["use_mask_token"] is False  # the official fine-tuning model has none


class _Runs:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("payload", [
    lambda marker: _Runs(__import__("os").system, (f"touch {marker}",)),
    lambda marker: _Runs(eval, (f"open({str(marker)!r}, 'w').close()",)),
    lambda marker: {"model": {}, "config": _Runs(__import__("os").system, (f"touch {marker}",))},
], ids=["os.system", "builtins.eval", "inside-config"])
def test_crafted_pickles_are_refused_without_running(tmp_path, payload):
    marker = tmp_path / "ran"
    crafted = tmp_path / "crafted.pth"
    torch.save(payload(marker), crafted)
    with pytest.raises(CheckpointError, match=r"refused: loading would run code.*refused global (posix|os|nt)"
                                              r"\.system|refused global (__builtin__|builtins)\.eval"):
        official.read_checkpoint_file(crafted)
    assert not marker.exists()
    # The same in a plain (not zip) pickle: torch's legacy path also goes through the restricted reader.
    legacy = tmp_path / "legacy.pkl"
    legacy.write_bytes(pickle.dumps(payload(marker), protocol=2))
    with pytest.raises(CheckpointError):
        official.read_checkpoint_file(legacy)
    assert not marker.exists()


def test_restricted_unpickler_allows_only_its_list():
    data = pickle.dumps(_Runs(__import__("os").system, ("true",)), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        official.RestrictedUnpickler(__import__("io").BytesIO(data)).load()
    cfg_like = pickle.dumps(official.OfficialConfig(A=1), protocol=2).replace(
        b"mimscale.models.official\nOfficialConfig", b"yacs.config\nCfgNode")
    assert official.RestrictedUnpickler(__import__("io").BytesIO(cfg_like)).load() == {"A": 1}


def _expected_pretrain():
    return EXPECTED["pretrain_fp32"]


@pytest.mark.parametrize("path,overrides", [(FULL, []), (RPE, GEOMETRY)], ids=["full", "rpe_mlp"])
def test_official_loss_and_features(inputs, path, overrides):
    model, cfg, fmt = load_for_val_loss(path, None, overrides)
    assert fmt == "official" and (cfg.data.img_size, cfg.data.mask_patch_size, cfg.data.mask_ratio) == (192, 32, 0.6)
    assert cfg.objective.norm_target and cfg.objective.norm_target_window == 47
    exp = _expected_pretrain()
    with torch.no_grad():
        loss = model.eval()(inputs["inputs192"], inputs["masks"].long()).loss.item()
        z = model.encoder(inputs["inputs192"], inputs["masks"].long())
    assert loss == pytest.approx(exp["loss"], rel=1e-5)
    assert z.shape == (2, 64, 6, 6)
    assert z.mean().item() == pytest.approx(exp["features_mean"], abs=1e-6)
    assert z.std().item() == pytest.approx(exp["features_std"], rel=1e-5)
    assert torch.allclose(z[0, 0, 0, :6], torch.tensor(exp["features_img0_ch0_row0"]), atol=1e-5)


def test_fine_tuning_loads_the_same_encoder_from_both_pretraining_files(inputs):
    full = load_encoder(FULL)
    assert full.kwargs["img_size"] == 192 and full.kwargs["window_size"] == 12 and full.checkpoint == str(FULL)
    rpe = load_encoder(RPE, model="swinv2", overrides=SWIN, img_size=192)
    a, b = full.encoder.state_dict(), rpe.encoder.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # cpb_mlp loaded from rpe_mlp
    with torch.no_grad():
        z = full.encoder.eval()(inputs["inputs192"], inputs["masks"].long())
    assert z.mean().item() == pytest.approx(_expected_pretrain()["features_mean"], abs=1e-6)
    # The official fine-tuning geometry: 224 px, window 14, position coordinates normalised by 12/12/12/6.
    at224 = load_encoder(FULL, img_size=224, overrides={"window_size": 14})
    assert at224.kwargs["pretrained_window_sizes"] == (12, 12, 12, 6)


def test_official_fine_tuned_logits(inputs):
    loaded = load_encoder(TUNED)
    assert loaded.kwargs["img_size"] == 224 and loaded.kwargs["window_size"] == 14
    assert loaded.encoder.mask_token is None
    state = official.read_checkpoint_file(TUNED)["model"]
    model = Classifier(loaded.encoder, 10)
    model.head.load_state_dict({"weight": state["head.weight"], "bias": state["head.bias"]})
    with torch.no_grad():
        logits = model.eval()(inputs["inputs224"])
    expected = torch.tensor(EXPECTED["finetune_fp32"]["logits_first3"])
    assert logits.shape == (2, 10)
    assert torch.allclose(logits[:, :3], expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # fp64: the official fp64 run keeps two fp32 constants; they move the logits ~4e-9
        logits64 = model.double()(inputs["inputs224"].double())
    expected64 = torch.tensor(EXPECTED["finetune_fp64"]["logits_first3"], dtype=torch.float64)
    assert (logits64[:, :3] - expected64).abs().max() < 1e-8


def test_ddp_prefix_is_stripped_before_the_format_is_recognised(tmp_path, inputs):
    state = official.read_checkpoint_file(RPE)["model"]
    ddp = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, ddp)
    model, _, fmt = load_for_val_loss(ddp, None, GEOMETRY)
    assert fmt == "official"
    with torch.no_grad():
        loss = model.eval()(inputs["inputs192"], inputs["masks"].long()).loss.item()
    assert loss == pytest.approx(_expected_pretrain()["loss"], rel=1e-5)
    assert load_encoder(ddp, model="swinv2", overrides=SWIN, img_size=192).checkpoint == str(ddp)


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert len(msg.splitlines()) == 1
    return msg


def test_a_model_of_another_geometry_is_refused():
    # The file's config says 192 px / window 12: a protocol that changes it is refused, not evaluated.
    with pytest.raises(EvalError) as e:
        load_for_val_loss(FULL, None, ["data.img_size=224"])
    assert "img_size 192 in the file's config, 224 in the model" in _one_line(e)
    with pytest.raises(EvalError) as e:
        load_for_val_loss(FULL, None, ["model.kwargs.window_size=8"])
    assert "window_size 12 in the file's config, 8 in the model" in _one_line(e)
    # Without a config the stored geometry buffers decide: only a model name means the 32 px CPU protocol...
    with pytest.raises(EvalError) as e:
        load_for_val_loss(RPE, None, ["model.name=swinv2"])
    assert "was saved for another image size or window" in _one_line(e)
    # ... and the right size with the wrong window would otherwise load (the relative position tables differ).
    wrong_window = [*GEOMETRY[:-1], GEOMETRY[-1].replace("window_size: 12", "window_size: 8")]
    with pytest.raises(EvalError) as e:
        load_for_val_loss(RPE, None, wrong_window)
    assert "attn.relative_coords_table is (529, 2) in the file, (225, 2) in the model" in _one_line(e)
    # At 96 px the second stage (12 x 12 tokens) fits one window: its stored shifted-window mask has no place.
    with pytest.raises(EvalError) as e:
        load_for_val_loss(RPE, None, [*GEOMETRY, "data.img_size=96"])
    assert "layers.1.blocks.1.attn_mask is stored (4, 144, 144) but the model's block has no shifted" in _one_line(e)
    with pytest.raises(EvalError) as e:  # fine-tuning checks the same buffers
        load_encoder(RPE, model="swinv2", overrides={**SWIN, "window_size": 8}, img_size=192)
    assert "saved for another image size or window" in _one_line(e)
    with pytest.raises(EvalError) as e:
        load_for_val_loss(TUNED, None, [])
    assert "official fine-tuned checkpoint (no SimMIM decoder)" in _one_line(e)
