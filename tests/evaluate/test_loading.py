"""Loading a run's encoder: decoder dropped, index buffers rebuilt, other sizes / windows, clear refusals."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from eval_runs import simmim_state, write_run

from mimscale.cli import main
from mimscale.evaluate import EvalError, load_encoder

# An explicit three-stage Swin V2 (not a preset, so the test does not move when presets are retuned): patch 2
# at 32 px gives stages of 16, 8 and 4 tokens, so window 4 is effective in every stage.
SWIN = dict(patch_size=2, embed_dim=16, depths=[1, 1, 1], num_heads=[1, 2, 4], window_size=4)


@pytest.fixture(scope="module")
def swin_run(tmp_path_factory):
    state = simmim_state("swinv2", **SWIN)
    # A reference-style checkpoint may carry index buffers: of the run's geometry (window 4: 16 x 16), they are
    # rebuilt, not loaded (zeros here, so a loaded one would show).
    state["encoder.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
    kwargs = "{" + ", ".join(f"{k}: {v}" for k, v in SWIN.items()) + "}"
    return write_run(tmp_path_factory.mktemp("swin"), "swinv2", state, step=5, overrides=[f"model.kwargs={kwargs}"])


def test_loads_encoder_only_with_weights(swin_run):
    loaded = load_encoder(swin_run)
    state = torch.load(loaded.checkpoint, weights_only=False)["model"]
    assert loaded.step == 5 and loaded.kwargs["img_size"] == 32
    assert torch.equal(loaded.encoder.patch_embed.proj.weight, state["encoder.patch_embed.proj.weight"])
    # every tensor the encoder keeps is the checkpoint's, bit for bit (what fine-tuning starts from)
    own = loaded.encoder.state_dict()
    saved = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.") and
             k.removeprefix("encoder.") in own}
    assert len(saved) > 10 and all(torch.equal(own[k], v) for k, v in saved.items())
    assert not any(k.startswith("decoder") for k in loaded.encoder.state_dict())


def test_index_buffers_are_rebuilt_and_a_stored_one_of_another_window_is_refused(swin_run, tmp_path):
    index = load_encoder(swin_run).encoder.layers[0].blocks[0].attn.relative_position_index
    assert index.shape == (16, 16) and index.max() == 48  # rebuilt: (2*4-1)^2 - 1, not the stored zeros
    state = simmim_state("swinv2", **SWIN)
    state["encoder.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(3, 3, dtype=torch.long)
    kwargs = "{" + ", ".join(f"{k}: {v}" for k, v in SWIN.items()) + "}"
    bad = write_run(tmp_path / "bad", "swinv2", state, overrides=[f"model.kwargs={kwargs}"])
    with pytest.raises(EvalError, match=r"was saved for another image size or window: layers.0.blocks.0.attn."
                                        r"relative_position_index is \(3, 3\) in the file, \(16, 16\) in the model$"):
        load_encoder(bad)


def test_swin_at_other_image_and_window_size(swin_run):
    # Pre-trained at 32 px / window 4 (patch 2: stages 16, 8, 4 -> effective windows 4, 4, 4).
    loaded = load_encoder(swin_run, img_size=64, overrides={"window_size": 8})
    enc = loaded.encoder
    assert loaded.kwargs["pretrained_window_sizes"] == (4, 4, 4)
    assert enc.layers[0].blocks[0].window == 8
    attn = enc.layers[0].blocks[0].attn
    assert attn.relative_position_index.shape == (64, 64)  # rebuilt for the 8x8 window
    ref = load_encoder(swin_run).encoder
    assert torch.equal(attn.cpb_mlp[0].weight, ref.layers[0].blocks[0].attn.cpb_mlp[0].weight)
    with torch.no_grad():
        out = enc.eval().forward_features(torch.randn(2, 3, 64, 64))
        maps = enc.forward_intermediates(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, enc.num_features, 8, 8) and torch.isfinite(out).all()
    assert all(torch.isfinite(m).all() for m in maps)


def test_vit_at_other_image_size(tmp_path):
    run = write_run(tmp_path / "vit", "vit-cpu-s", simmim_state("vit-cpu-s"))
    enc = load_encoder(run, img_size=48).encoder.eval()
    with torch.no_grad():
        out = enc.forward_features(torch.randn(2, 3, 48, 48))
    assert out.shape == (2, 32, 6, 6) and torch.isfinite(out).all()


def test_checkpoint_of_another_model_is_refused(swin_run, capsys):
    with pytest.raises(EvalError, match=r"does not fit model 'swinv2-cpu-s': .*(missing|mismatch)"):
        load_encoder(swin_run, model="swinv2-cpu-s")
    with pytest.raises(EvalError, match=r"does not fit model 'swinv2': \d+ shape mismatches \(e.g. mask_token: "
                                        r"checkpoint \(1, 1, 16\) vs model \(1, 1, 8\)\)$"):
        load_encoder(swin_run, overrides={"embed_dim": 8})
    assert main(["finetune", str(swin_run), "task=knn", "model=vit-cpu-s"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mimscale finetune: error: checkpoint") and "does not fit model 'vit-cpu-s'" in err
    assert len(err.splitlines()) == 1


def test_run_without_checkpoint_is_refused(tmp_path, capsys):
    run = write_run(tmp_path / "empty", "vit-cpu-s", None)
    assert main(["finetune", str(run), "task=knn"]) == 2
    assert "no checkpoint found" in capsys.readouterr().err
    assert main(["finetune", str(tmp_path / "missing"), "task=knn"]) == 2
    assert "run directory not found" in capsys.readouterr().err
    # init=random needs no checkpoint: the baseline of every probe.
    assert load_encoder(run, init="random").checkpoint is None


# `mimscale finetune FILE`: a checkpoint file instead of a run directory; the official code's own files
# (tests/fixtures/official-swinv2/README.md) give the model from their config.
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "official-swinv2"
TINY_KNN = ["task=knn", "knn_k=3", "batch_size=10", "train_source=shapes:size=32,pool=20,seed=0,split=probe",
            "test_source=shapes:size=32,pool=10,seed=0,split=test"]
OFFICIAL_SWIN = "model_kwargs={embed_dim: 8, depths: [1, 2, 1, 1], num_heads: [1, 2, 4, 8], window_size: 12}"


@pytest.mark.parametrize("name,args,img_size,window", [
    ("official_pretrain_full.pth", [], 192, 12),
    ("official_pretrain_rpe_mlp.pth", ["model=swinv2", OFFICIAL_SWIN, "img_size=192"], 192, 12),
    ("official_finetune_full.pth", [], 224, 14),
    ("official_pretrain_full.pth", ["img_size=224", "model_kwargs={window_size: 14}"], 224, 14),
], ids=["pretrain-full", "rpe_mlp", "finetune-full", "pretrain-full-at-224"])
def test_finetune_command_takes_an_official_checkpoint_file(tmp_path, capsys, name, args, img_size, window):
    ckpt = tmp_path / name
    shutil.copyfile(FIX / name, ckpt)  # results are written beside the file
    assert main(["finetune", str(ckpt), *TINY_KNN, *args]) == 0
    result = json.loads((tmp_path / f"{ckpt.stem}_eval" / "eval" / "knn.json").read_text())
    assert result["checkpoint"] == str(ckpt) and result["img_size"] == img_size
    assert result["model_kwargs"]["window_size"] == window and result["model_kwargs"]["embed_dim"] == 8
    assert result["data"]["num_test"] == 10 and 0 <= result["metrics"]["top1"] <= 1
    if window == 14:  # the official fine-tuning geometry: coordinates normalised by the pre-training windows
        assert result["model_kwargs"]["pretrained_window_sizes"] == [12, 12, 12, 6]
    assert f"wrote {tmp_path / f'{ckpt.stem}_eval' / 'eval' / 'knn.json'}" in capsys.readouterr().out


def test_finetune_command_on_a_mimscale_checkpoint_file_and_bad_files(swin_run, tmp_path, capsys):
    ckpt = tmp_path / "step.pt"
    shutil.copyfile(next((swin_run / "checkpoints").glob("*.pt")), ckpt)
    assert main(["finetune", str(ckpt), *TINY_KNN]) == 0
    result = json.loads((tmp_path / "step_eval" / "eval" / "knn.json").read_text())
    assert result["checkpoint"] == str(ckpt) and result["model"] == "swinv2" and result["step"] == 5
    capsys.readouterr()
    assert main(["finetune", str(FIX / "official_pretrain_rpe_mlp.pth"), *TINY_KNN]) == 2  # no config, no model
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no config: name its model" in err
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    assert main(["finetune", str(junk), *TINY_KNN]) == 2
    assert "is not a readable checkpoint" in capsys.readouterr().err
