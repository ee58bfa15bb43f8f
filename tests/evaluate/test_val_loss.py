"""``mimscale val-loss``: the held-out loss of a mimscale, an official-format and a transformers checkpoint,
with the study's protocol; official checkpoints load strictly and give the features of their model."""

import json

import torch
from transformers import Swinv2Config, Swinv2ForMaskedImageModeling

from mimscale.cli import main
from mimscale.evaluate.val_loss import load_for_val_loss
from mimscale.rundir import RunDir
from mimscale.train.checkpoint import atomic_torch_save, load_checkpoint
from mimscale.train.setup import build_simmim

TINY = ["model.name=swinv2-cpu-t", "data.source=shapes:size=32,pool=128,seed=0", "data.val_size=32",
        "data.probe_size=32", "train.batch_size=16", "train.iters=4", "train.eval_points=1", "train.eval_budget=0",
        "train.recon_images=0", "threads=1", "train.warmup_iters=2", "objective.norm_target_window=15"]
VAL = "shapes:size=32,pool=1000,seed=0,split=val"  # the held-out split of the run's source


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _official(state: dict, model) -> dict:
    """A state dict as the official SimMIM code saves it: derived buffers stored, early `rpe_mlp` naming."""
    out = {k.replace(".cpb_mlp.", ".rpe_mlp."): v for k, v in state.items()}
    for name, buf in model.named_buffers():
        if name.endswith(("relative_coords_table", "relative_position_index", "attn_mask")) and buf is not None:
            out[name] = buf.clone()
    return out


def test_val_loss_of_a_run_and_of_its_weights_in_the_official_format(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", *TINY, f"run_dir={run}"]) == 0
    expected = RunDir(run).read_summary()["final_val_loss"]
    capsys.readouterr()
    assert main(["val-loss", str(run), "--data", VAL]) == 0
    res = _json_out(capsys)
    assert res["format"] == "mimscale" and res["images"] == 32 and res["val_loss"] == expected

    ckpt = load_checkpoint(RunDir(run).latest_checkpoint())
    cfg_file = RunDir(run).config
    reference = build_simmim(__import__("mimscale.config", fromlist=["load_config"]).load_config(cfg_file))
    reference.load_state_dict(ckpt["model"])
    official = tmp_path / "simmim_pretrain__swinv2_tiny.pth"
    atomic_torch_save(official, {"model": _official(ckpt["model"], reference), "epoch": 799})
    assert main(["val-loss", str(official), "--data", VAL, "-c", str(cfg_file)]) == 0
    res = _json_out(capsys)
    assert res["format"] == "official" and res["val_loss"] == expected

    loaded, _, _ = load_for_val_loss(official, str(cfg_file), [])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.encoder.forward_features(x), reference.encoder.forward_features(x))

    bad = tmp_path / "bad.pth"
    atomic_torch_save(bad, {"model": {**_official(ckpt["model"], reference), "encoder.extra.weight": torch.zeros(1)}})
    assert main(["val-loss", str(bad), "--data", VAL, "-c", str(cfg_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 unexpected keys (e.g. encoder.extra.weight)" in err


def test_val_loss_of_a_transformers_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    hf = Swinv2ForMaskedImageModeling(Swinv2Config(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4,
        encoder_stride=8, use_mask_token=True)).eval()
    hf.save_pretrained(tmp_path / "hf")
    args = ["data.img_size=32", "data.mask_patch_size=8", "data.val_size=32", "objective.norm_target=false"]
    assert main(["val-loss", str(tmp_path / "hf"), "--data", VAL, *args]) == 0
    res = _json_out(capsys)
    assert res["format"] == "transformers" and res["images"] == 32 and 0 < res["val_loss"] < 10
