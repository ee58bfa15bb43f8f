"""Every bad input of issue 27, one row each: the command (run in-process through ``mimscale.cli.main``), exit 2
and one line on stderr naming the problem; never a traceback, and nothing computed or written first.

``{run}`` is a copy of the bbf7da2 pre-training fixture (a run directory with one checkpoint), ``{tmp}`` the
test's own directory.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from mimscale.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "bbf7da2" / "pretrain"
CKPT = "checkpoints/step_0000004.pt"

# A tiny pre-training that would run in seconds: a row must fail before it starts.
TINY = ["model.name=swinv2-cpu-t", "data.source=shapes:size=32,pool=128,seed=0", "data.val_size=32",
        "data.probe_size=32", "train.batch_size=16", "train.eval_points=2", "train.eval_budget=0",
        "train.recon_images=0", "threads=1", "train.warmup_iters=2", "objective.norm_target_window=15",
        "train.iters=4"]
SRC = ["train_source=shapes:size=32,pool=64,seed=0,split=probe", "test_source=shapes:size=32,pool=32,seed=0,split=test",
       "threads=1"]
KNN = ["finetune", "{run}", "task=knn", *SRC]
FT = ["finetune", "{run}", "task=finetune", "epochs=1", "warmup_epochs=0", *SRC]
LIN = ["finetune", "{run}", "task=linear", "probe=logistic", *SRC]
BENCH = ["bench", "--model", "vit-cpu-s", "--steps", "1"]
STUDY = str(Path(__file__).parent / "fixtures" / "bbf7da2" / "study" / "study-file.yaml")


def pretrain(*overrides):
    return ["pretrain", *TINY, *overrides, "run_dir={tmp}/pretrain"]


ROWS = [
    # --- "tracebacks where one line is promised" ---
    ("device pretrain", pretrain("device=tpu"), "device must be auto, cpu, cuda or cuda:N"),
    ("device finetune", [*KNN, "device=tpu"], "device must be auto, cpu, cuda or cuda:N"),
    ("device bench", [*BENCH, "--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N"),
    ("num_workers pretrain", pretrain("data.num_workers=-1"), "data.num_workers must be >= 0"),
    ("num_workers finetune", [*KNN, "num_workers=-1"], "num_workers must be >= 0"),
    ("num_workers bench", [*BENCH, "--workers", "-1"], "--workers must be >= 0"),
    ("base_lr pretrain", pretrain("train.base_lr=-1"), "train.base_lr must be positive"),
    ("base_lr finetune", [*FT, "base_lr=-1"], "base_lr must be positive"),
    ("seed -1 pretrain", pretrain("seed=-1"), "seed must be an integer in [0, 2^32)"),
    ("seed -1 finetune", [*KNN, "seed=-1"], "seed must be an integer in [0, 2^32)"),
    ("seed 1e20", pretrain("seed=1e20"), "could not be converted to Integer"),
    ("seed 10^20", pretrain("seed=100000000000000000000"), "seed must be an integer in [0, 2^32)"),
    ("subset_seed", pretrain("data.subset_seed=-5"), "data.subset_seed must be an integer in [0, 2^32)"),
    ("val_mask_seed", pretrain("data.val_mask_seed=-5"), "data.val_mask_seed must be an integer in [0, 2^32)"),
    ("data subset --seed", ["data", "subset", "shapes:size=32,pool=100", "--seed", "-5", "--out", "{tmp}/s"],
     "--seed must be an integer in [0, 2^32)"),
    ("data subset --holdout-seed", ["data", "subset", "shapes:size=32,pool=100", "--holdout-seed", "-5", "--out",
                                    "{tmp}/s"], "--holdout-seed must be an integer in [0, 2^32)"),
    ("shapes size=abc", pretrain("data.source=shapes:size=abc"), "bad options for data source 'shapes'"),
    ("data subset size=abc", ["data", "subset", "shapes:size=abc", "--out", "{tmp}/s"],
     "bad options for data source 'shapes'"),
    ("embed_dim 7", pretrain("model.name=vit-cpu-s", "model.kwargs.embed_dim=7"),
     "model embed_dim 7 is not a multiple of num_heads 2"),
    ("patch_size 3", pretrain("model.kwargs.patch_size=3"), "model img_size 32 is not a multiple of its patch_size 3"),
    ("num_heads 0 swinv2", pretrain("model.kwargs.num_heads=[0,0]"), "model num_heads must be all at least 1"),
    ("num_heads 0 vit", pretrain("model.name=vit-cpu-s", "model.kwargs.num_heads=0"),
     "model num_heads must be at least 1"),
    ("window_size 0", pretrain("model.kwargs.window_size=0"), "model window_size must be positive"),
    ("unknown model kwarg", pretrain("model.kwargs.window=4"), "model family 'swinv2' has no keyword 'window'"),
    ("model_kwargs finetune", [*KNN, "model_kwargs={window_size: 0}"], "model window_size must be positive"),
    ("eval_every 0 finetune", [*FT, "eval_every=0"], "eval_every must be positive"),
    ("drop_path finetune", [*FT, "drop_path=1.5"], "drop_path must be in [0, 1)"),
    ("drop_path_rate kwarg", pretrain("model.kwargs.drop_path_rate=1.5"),
     "model.kwargs.drop_path_rate is set by model.drop_path_rate"),
    ("drop_path_rate model", pretrain("model.drop_path_rate=1.5"), "model.drop_path_rate must be in [0, 1)"),
    ("logistic_c", [*LIN, "logistic_c=-1"], "logistic_c must be positive"),
    ("bench --batch 0", [*BENCH, "--batch", "0"], "--batch must be positive"),
    ("bench --img-size 33", [*BENCH, "--img-size", "33"], "model img_size (33, 33) is not divisible by patch_size 8"),
    ("fp16_init_scale pretrain", pretrain("train.fp16_init_scale=1e300"), "train.fp16_init_scale must be positive"),
    ("fp16_init_scale finetune", [*FT, "fp16_init_scale=1e300"], "fp16_init_scale must be positive"),
    ("oc.env interpolation", pretrain("name=${oc.env:HOME}"), "name must be a plain name"),
    ("missing env interpolation", pretrain("out=${oc.env:MIMSCALE_NO_SUCH_VARIABLE}"),
     "cannot resolve an interpolation in the config"),
    ("recursive interpolation", pretrain("name=${name}"), "cannot resolve an interpolation in the config"),
    # --- "silently accepted" ---
    ("study run --threads -1", ["study", "run", STUDY, "--out", "{tmp}/study", "--threads", "-1"],
     "--threads must be >= 0"),
    ("vit 0 blocks", pretrain("model.name=vit-cpu-s", "model.kwargs.depth=0"), "model depth must be at least 1"),
    ("swin depths [0,0]", pretrain("model.kwargs.depths=[0,0]"), "model depths must be all at least 1"),
    ("warmup longer than the run", pretrain("train.warmup_iters=1000000"),
     "train.warmup_iters 1000000 is longer than the run (4 steps)"),
    ("label_smoothing", [*FT, "label_smoothing=1.5"], "label_smoothing must be in [0, 1)"),
    ("mixup", [*FT, "mixup=-1"], "mixup must be >= 0"),
    ("reprob", [*FT, "reprob=2"], "reprob must be in [0, 1]"),
    ("layer_decay 0", [*FT, "layer_decay=0"], "layer_decay must be in (0, 1]"),
    ("layer_decay 2", [*FT, "layer_decay=2"], "layer_decay must be in (0, 1]"),
    ("randaug_n", [*FT, "randaug_n=-1"], "randaug_n must be >= 0"),
    ("knn_t 0", [*KNN, "knn_t=0"], "knn_t must be positive"),
    ("knn_t -1", [*KNN, "knn_t=-1"], "knn_t must be positive"),
    ("knn_k 1,000,000", [*KNN, "knn_k=1000000"], "knn_k 1000000 is more than the 64 training images"),
    ("warmup_epochs > epochs", [*FT, "warmup_epochs=5"], "warmup_epochs 5 is longer than the fine-tuning"),
    ("clip_grad", [*FT, "clip_grad=-1"], "clip_grad must be >= 0"),
    ("threads finetune", [*KNN, "threads=-1"], "threads must be >= 0"),
    ("threads bench", [*BENCH, "--threads", "-1"], "--threads must be >= 0"),
    ("threads pretrain", pretrain("threads=-1"), "threads must be >= 0"),
    ("knn seed -1", [*KNN, "seed=-1"], "seed must be an integer in [0, 2^32)"),
    ("analyze --n-boot -5", ["analyze", "{tmp}/results.csv", "--n-boot", "-5"], "--n-boot must be positive"),
    ("report --n-boot -5", ["report", "{tmp}/results.csv", "--n-boot", "-5"], "--n-boot must be positive"),
    ("run name traversal", ["pretrain", *TINY, "out={tmp}/out", "name=../../../x"], "name must be a plain name"),
    ("run name absolute", ["pretrain", *TINY, "out={tmp}/out", "name=/tmp/x"], "name must be a plain name"),
    ("eval name traversal", [*KNN, "name=../x"], "name must be a plain name"),
    ("bench --steps -1", [*BENCH, "--steps", "-1"], "--steps must be positive"),
    ("demo --workers 0", ["demo", "--workers", "0", "--out", "{tmp}/demo"], "--workers must be at least 1"),
    ("demo --seed 1e29", ["demo", "--seed", str(10**29), "--out", "{tmp}/demo"],
     "--seed must be an integer in [0, 2^32)"),
    # --- fixed before (issue 27's first part), cheap to keep here ---
    ("garbage checkpoint", ["val-loss", "{run}/" + CKPT, "--data", "shapes:size=32,pool=16"],
     "is not a readable checkpoint"),
]


@pytest.fixture
def places(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    (tmp_path / "results.csv").write_text("model,params,data_size,iters,val_loss\na,1,1,1,1\n")
    return {"run": str(run), "tmp": str(tmp_path)}


def _garbage_checkpoint(run: Path) -> None:
    (run / CKPT).write_bytes(b"\x00garbage" * 64)
    (run / CKPT).with_suffix(".json").unlink()


# What a row needs done to the run directory first.
SETUP = {"garbage checkpoint": _garbage_checkpoint}


@pytest.mark.parametrize("row, argv, fragment", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line_and_exit_2(places, row, argv, fragment, capsys, tmp_path):
    argv = [a.replace("{run}", places["run"]).replace("{tmp}", places["tmp"]) for a in argv]
    run = Path(places["run"])
    SETUP.get(row, lambda run: None)(run)
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code == 2 and len(err.strip().splitlines()) == 1, (code, err)
    assert fragment in err, err
    # refused before anything was computed: no checkpoint or metric (a data source or the model is checked when
    # the run starts, after its directory is made), no evaluation result, no subset manifest, no study
    for d in (tmp_path / "pretrain", tmp_path / "out"):
        assert not list(d.rglob("*.pt")) and not list(d.rglob("metrics.jsonl"))
    assert not (run / "eval").exists() or not any((run / "eval").glob("*.json"))
    assert not (tmp_path / "s").exists() and not (tmp_path / "study").exists()


def _saved(tmp_path, name, change):
    from mimscale.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(FIXTURE / CKPT)
    path = tmp_path / f"{name}.pt"
    torch.save(change(ckpt), path)
    return path


@pytest.mark.parametrize("name, change, fragment", [
    ("config-section-a-text", lambda c: {**c, "config": {**c["config"], "train": "garbage"}},
     "the config stored in the checkpoint is malformed"),
    ("config-unknown-key", lambda c: {**c, "config": {**c["config"], "train": {**c["config"]["train"], "nokey": 1}}},
     "the config stored in the checkpoint is malformed: unknown config key 'train.nokey'"),
    ("config-bad-value", lambda c: {**c, "config": {**c["config"], "seed": "abc"}},
     "the config stored in the checkpoint is malformed"),
    ("weights-not-tensors", lambda c: {**c, "model": {k: "x" for k in c["model"]}}, "is a str, not a tensor"),
])
def test_val_loss_of_a_malformed_checkpoint(tmp_path, capsys, name, change, fragment):
    path = _saved(tmp_path, name, change)
    code = main(["val-loss", str(path), "--data", "shapes:size=32,pool=16,seed=0"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert fragment in err, err


class _Payload:
    """Runs code when unpickled (a harmless one: it would create a file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_transformers_bin_that_would_run_code_is_refused(tmp_path, capsys):
    pytest.importorskip("transformers")  # a dev extra
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "vit", "architectures": ["ViTForMaskedImageModeling"]}))
    marker = tmp_path / "code-ran"
    torch.save({"vit.embeddings.cls_token": _Payload(str(marker))}, hf / "pytorch_model.bin")
    code = main(["val-loss", str(hf), "--data", "shapes:size=32,pool=16,seed=0"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "would run code when loaded" in err, err
    assert not marker.exists()
