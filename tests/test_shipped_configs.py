"""Every shipped pre-training config and built-in study parses, and each file opens with its command."""

import json
from pathlib import Path

import pytest
import yaml

from mimscale.cli import main
from mimscale.config import load_config
from mimscale.demo import builtin_study
from mimscale.models import model_kwargs
from mimscale.study.spec import load_study

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "mimscale" / "configs"
PRETRAIN = sorted((CONFIGS / "pretrain").glob("*.yaml"))


@pytest.mark.parametrize("path", PRETRAIN, ids=lambda p: p.name)
def test_pretrain_configs_parse_and_name_real_models(path):
    assert path.read_text().startswith("# mimscale pretrain -c pretrain/" + path.name)
    cfg = load_config(path)
    family, kwargs = model_kwargs(cfg.model.name)
    assert family == "swinv2"
    if cfg.model.name in ("swinv2-s", "swinv2-b", "swinv2-l", "swinv2-h", "swinv2-g"):
        # the paper's recipe (docs/METHOD.md, Pre-training recipe): 4e-4 at batch 2048, 192 px, 32 px mask units, step decay
        assert cfg.train.base_lr * cfg.train.batch_size / 512 == pytest.approx(4e-4)
        assert (cfg.data.img_size, cfg.data.mask_patch_size, cfg.train.schedule) == (192, 32, "step")
        assert cfg.objective.norm_target and cfg.objective.norm_target_window == 47


@pytest.mark.parametrize("quick", [False, True])
def test_builtin_demo_studies_expand(quick):
    study = load_study(builtin_study(quick))
    assert builtin_study(quick).read_text().startswith("# mimscale demo")
    models = {r.cfg.model.name for r in study.runs}
    fractions = {r.cfg.data.fraction for r in study.runs}
    lengths = {r.cfg.train.iters for r in study.runs}
    if not quick:  # issue: >= 3 model sizes x 4 nested fractions x 2 lengths
        assert len(models) >= 3 and fractions == {0.1, 0.2, 0.5, 1.0} and len(lengths) == 2
        assert len(study.runs) == len(models) * 4 * 2
    assert {e["name"] for e in study.evals} == {"finetune", "linear", "knn"}


@pytest.mark.parametrize("backbone", ["vit", "swinv2"])
def test_the_demos_fine_tuning_is_the_shipped_cpu_recipe(backbone):
    # One CPU recipe: the demo inlines finetune/finetune-cpu.yaml (so its study definition holds every value),
    # adding only its data pools and a single evaluation after the last epoch.
    shipped = yaml.safe_load((CONFIGS / "finetune" / "finetune-cpu.yaml").read_text())
    spec = next(e for e in load_study(builtin_study(False, backbone)).evals if e["task"] == "finetune")
    extra = {k: v for k, v in spec.items() if k not in shipped}
    assert {k: spec[k] for k in shipped} == shipped
    assert set(extra) == {"name", "train_source", "test_source", "eval_every"}
    assert extra["eval_every"] == shipped["epochs"]


def test_bench_reports_throughput_and_mfu(capsys):
    assert main(["bench", "--model", "swinv2-cpu-t", "--steps", "1", "--batch", "8", "--workers", "0",
                 "--json"]) == 0
    printed = capsys.readouterr()
    out = json.loads(printed.out.strip().splitlines()[-1])
    assert printed.err.startswith(f"bench swinv2-cpu-t: {out['images_per_s']:.1f} train images/s")
    assert out["images_per_s"] > 0 and out["flops_per_image"] > 0 and 0 < out["mfu"] < 1
    assert out["loader_images_per_s"] > 0 and out["peak_memory_mb"] > 0
