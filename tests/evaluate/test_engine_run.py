"""End to end with the real pre-training engine: a 3-step Swin V2 run, then every shipped CPU evaluation
config through the command-line entry point (tiny pools and one epoch, so only the plumbing is tested)."""

import json
from pathlib import Path

import pytest
import torch

from mimscale.config import load_config
from mimscale.evaluate import finetune_main
from mimscale.train import pretrain

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "mimscale" / "configs" / "finetune"
TINY = ["train_source=shapes:size=32,pool=64,seed=0,split=probe",
        "test_source=shapes:size=32,pool=32,seed=0,split=test", "batch_size=16"]


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("engine") / "swin"
    threads = torch.get_num_threads()  # the engine sets its own thread count (threads=1, as _one_thread)
    try:
        pretrain(load_config(None, [
            "model.name=swinv2-cpu-t", "train.iters=3", "train.batch_size=16", f"run_dir={run_dir}", "threads=1",
            "data.source=shapes:size=32,pool=64,seed=0,val_pool=32", "data.val_size=32", "data.probe_size=16",
            "train.recon_images=0", "train.eval_points=1", "objective.norm_target_window=15"]))
    finally:
        torch.set_num_threads(threads)
    return run_dir


@pytest.mark.parametrize("config, extra", [
    ("knn-cpu", ["img_size=64", "model_kwargs={window_size: 8}"]),  # another image and window size
    ("linear-cpu", ["linear_epochs=3"]),
    ("finetune-cpu", ["epochs=1", "warmup_epochs=1"]),  # a warmup longer than the fine-tuning is refused
    ("segment-cpu", ["epochs=1"]),
])
def test_cpu_configs_on_an_engine_run(engine_run, config, extra, capsys):
    args = [str(engine_run), "-c", str(CONFIGS / f"{config}.yaml"), *TINY, *extra]
    assert finetune_main(args) == 0, capsys.readouterr().err
    task = config.split("-")[0]
    result = json.loads((engine_run / "eval" / f"{task}.json").read_text())
    assert result["step"] == 3 and result["checkpoint"].endswith("step_0000003.pt")
    value = result["metrics"][result["headline"]]
    assert 0.0 <= value <= 1.0
    if config == "knn-cpu":
        kwargs = result["model_kwargs"]
        assert result["img_size"] == 64 and kwargs["window_size"] == 8
        assert len(kwargs["pretrained_window_sizes"]) == len(kwargs["depths"])  # the 32 px windows, per stage
