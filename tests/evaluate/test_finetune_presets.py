"""Pre-training helps: for every CPU preset, an encoder pre-trained on the demo's data fine-tunes to a higher
top-1 than the same encoder from random init, with the shipped CPU fine-tuning config on the demo's labelled
pools. Slow (each preset is pre-trained for real): `make test-presets`, run by CI after `make test`."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mimscale.demo import builtin_study
from mimscale.evaluate import finetune_main
from mimscale.rundir import RunDir, read_json
from mimscale.study.spec import load_study
from mimscale.train import pretrain

CONFIG = Path(__file__).resolve().parents[2] / "src" / "mimscale" / "configs" / "finetune" / "finetune-cpu.yaml"
PRESETS = ["vit-cpu-s", "vit-cpu-m", "vit-cpu-l", "swinv2-cpu-t", "swinv2-cpu-s", "swinv2-cpu-m", "swinv2-cpu-l"]
PRETRAIN_ITERS = 2000  # the demo's longer length (after 500 iterations vit-cpu-l fine-tunes below its random init)


def _demo_config(preset: str, run_dir: Path):
    """The demo's full-pool run of this preset's family, with this preset and a shorter length."""
    study = load_study(builtin_study(False, "swinv2" if preset.startswith("swinv2") else "vit"))
    cfg = next(r.cfg for r in study.runs if r.cfg.data.fraction == 1.0)
    eval_spec = next(e for e in study.evals if e["task"] == "finetune")
    return OmegaConf.merge(cfg, {"model": {"name": preset}, "train": {"iters": PRETRAIN_ITERS},
                                 "run_dir": str(run_dir), "threads": 1}), eval_spec


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_pretrained_encoder_fine_tunes_better_than_random_init(preset, tmp_path, capsys, record_property):
    cfg, spec = _demo_config(preset, tmp_path / preset)
    pretrain(cfg)
    top1 = {}
    for init in ("pretrained", "random"):
        args = [str(cfg.run_dir), "-c", str(CONFIG), f"init={init}", f"name={init}", "threads=1",
                f"train_source={spec['train_source']}", f"test_source={spec['test_source']}"]
        assert finetune_main(args) == 0, capsys.readouterr().err
        top1[init] = read_json(RunDir(cfg.run_dir).eval_result(init))["metrics"]["top1"]
    record_property("measured", f"{preset}: fine-tuned top-1 {top1['pretrained']:.3f} pre-trained vs "
                                f"{top1['random']:.3f} from random init")
    assert top1["pretrained"] > top1["random"] + 0.02, top1
