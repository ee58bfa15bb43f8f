"""``mimscale val-loss``: the held-out loss of a mimscale checkpoint (also DDP-wrapped), of the official SimMIM
code's own files (full with their yacs config, early rpe_mlp naming) and of a transformers checkpoint, with the
study's protocol; bad input is refused with one line."""

import json
from pathlib import Path

import torch
from transformers import Swinv2Config, Swinv2ForMaskedImageModeling

from mimscale.cli import main
from mimscale.engine.checkpoint import atomic_torch_save, load_checkpoint
from mimscale.rundir import RunDir

TINY = ["model.name=swinv2-cpu-t", "data.source=shapes:size=32,pool=128,seed=0", "data.val_size=32",
        "data.probe_size=32", "train.batch_size=16", "train.iters=4", "train.eval_points=1", "train.eval_budget=0",
        "train.recon_images=0", "threads=1", "train.warmup_iters=2", "objective.norm_target_window=15"]
VAL = "shapes:size=32,pool=1000,seed=0,split=val"  # the held-out split of the run's source


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_val_loss_of_a_run_and_of_its_ddp_wrapped_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", *TINY, f"run_dir={run}"]) == 0
    expected = RunDir(run).read_summary()["final_val_loss"]
    capsys.readouterr()
    assert main(["val-loss", str(run), "--data", VAL]) == 0
    res = _json_out(capsys)
    assert res["format"] == "mimscale" and res["images"] == 32 and res["val_loss"] == expected

    # A checkpoint saved from a DDP wrapper (`module.` keys) is the same checkpoint.
    ckpt = load_checkpoint(RunDir(run).latest_checkpoint())
    ddp = tmp_path / "ddp.pt"
    atomic_torch_save(ddp, {**ckpt, "model": {f"module.{k}": v for k, v in ckpt["model"].items()}})
    assert main(["val-loss", str(ddp), "--data", VAL]) == 0
    assert _json_out(capsys)["val_loss"] == expected


# The official code's own files (tests/fixtures/official-swinv2/README.md); their numbers against the official
# outputs are checked in tests/models/test_official_files.py, here the command on them.
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "official-swinv2"
FULL, RPE, TUNED = (FIX / f"official_{n}.pth" for n in ("pretrain_full", "pretrain_rpe_mlp", "finetune_full"))
OFFICIAL_GEOMETRY = ["model.name=swinv2", "data.img_size=192", "data.mask_patch_size=32", "objective.norm_target=true",
                     "objective.norm_target_window=47",
                     "model.kwargs={embed_dim: 8, depths: [1, 2, 1, 1], num_heads: [1, 2, 4, 8], window_size: 12}"]
HELD_OUT_192 = "shapes:size=192,pool=4,seed=0,split=val"


def test_val_loss_of_the_official_files(tmp_path, capsys):
    # The full file as the official code saves it (yacs config, optimizer, ...): its config is the protocol.
    assert main(["val-loss", str(FULL), "--data", HELD_OUT_192]) == 0
    full = _json_out(capsys)
    assert full["format"] == "official" and full["images"] == 4
    assert (full["model"], full["img_size"], full["mask_patch_size"], full["mask_ratio"], full["norm_target"]) == (
        "swinv2", 192, 32, 0.6, True)
    assert 0.5 < full["val_loss"] < 1.5
    # The same weights in the early rpe_mlp naming, without a config: the geometry given -> the same number.
    assert main(["val-loss", str(RPE), "--data", HELD_OUT_192, *OFFICIAL_GEOMETRY]) == 0
    assert _json_out(capsys)["val_loss"] == full["val_loss"]
    # A fine-tuned file has no decoder; another geometry than the file's is refused; extra weights are refused.
    assert main(["val-loss", str(TUNED), "--data", HELD_OUT_192]) == 2
    assert "official fine-tuned checkpoint (no SimMIM decoder)" in capsys.readouterr().err
    assert main(["val-loss", str(FULL), "--data", HELD_OUT_192, "data.img_size=224"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "img_size 192 in the file's config, 224 in the model" in err
    bad = tmp_path / "bad.pth"
    atomic_torch_save(bad, {"model": {**load_checkpoint(RPE)["model"], "encoder.extra.weight": torch.zeros(1)}})
    assert main(["val-loss", str(bad), "--data", HELD_OUT_192, *OFFICIAL_GEOMETRY]) == 2
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
