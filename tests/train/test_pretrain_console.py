"""What `mimscale pretrain` tells a person: the config without a length, the step a resumed run took up, and a
summary line after the machine-readable JSON line."""

import json

import yaml

from mimscale.cli import main
from mimscale.rundir import RunDir

TINY = ["model.name=vit-cpu-s", "data.source=shapes:size=32,pool=64,seed=0", "data.val_size=16",
        "data.probe_size=16", "train.batch_size=16", "train.eval_points=2", "train.eval_budget=0",
        "train.recon_images=0", "threads=1"]


def test_print_config_works_without_a_training_length_and_says_so(capsys):
    assert main(["pretrain", "--print-config", "model.name=swinv2-cpu-t"]) == 0
    out = capsys.readouterr().out
    cfg = yaml.safe_load(out)
    assert cfg["model"]["name"] == "swinv2-cpu-t" and cfg["train"]["iters"] == 0
    assert out.splitlines()[-1].startswith("# no training length: give one of train.iters")
    assert main(["pretrain", "--print-config", "-c", "pretrain/swinv2-cpu.yaml"]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["train"]["iters"] == 1000 and "# no training length" not in out
    assert main(["pretrain", "--print-config", "data.img_size=33"]) == 2  # every other check still holds
    assert "not a multiple of data.mask_patch_size" in capsys.readouterr().err


def test_a_resumed_run_says_where_it_resumed_and_a_summary_follows_the_json(tmp_path, capsys):
    run = RunDir(tmp_path / "r")
    args = [*TINY, "train.iters=4", "train.ckpt_every=2", f"run_dir={run.path}"]
    assert main(["pretrain", *args]) == 0
    first = capsys.readouterr()
    assert "resumed at step" not in first.err
    result = json.loads(first.out.splitlines()[0])  # the JSON line first, machine-readable
    assert result["status"] == "done"
    summary = [line for line in first.err.splitlines() if line.startswith("pretrain done: final held-out loss")]
    assert summary == [f"pretrain done: final held-out loss {result['final_val_loss']:.4f}, best "
                       f"{result['best_val_loss']:.4f} at step {result['best_val_step']}, "
                       f"{result['images_per_s']:.1f} images/s"]
    run.summary.unlink()
    run.checkpoint(4).unlink()
    assert main(["pretrain", *args]) == 0
    err = capsys.readouterr().err
    assert err.count("resumed at step") == 1 and "[pretrain] resumed at step 2 of 4 from step_0000002.pt" in err
