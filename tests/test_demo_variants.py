"""`mimscale demo --seed / --data / --backbone`: each variant is the built-in study with every data source and
the training seed following, and the default demo keeps its run ids."""

import yaml

from mimscale.cli import main
from mimscale.demo import BACKBONES, builtin_study, default_out, variant_source, variant_study
from mimscale.study.spec import load_study, parse_study


def _doc(backbone="vit"):
    return yaml.safe_load(builtin_study(False, backbone).read_text())


def test_variant_sources_follow_data_and_seed():
    spec = "shapes:size=32,pool=1000,seed=0,val_pool=1000"
    assert variant_source(spec, "photos", 3) == "photos:size=32,pool=1000,seed=3,val_pool=1000"
    assert variant_source("shapes:size=32", "shapes", 2) == "shapes:size=32,seed=2"
    assert variant_source("folder:/x", "photos", 3) == "folder:/x"  # not a built-in source: left alone
    doc = variant_study(_doc(), "photos", 1)
    assert doc["base"]["data.source"].startswith("photos:") and doc["base"]["seed"] == 1
    sources = [e[k] for e in doc["evals"] for k in ("train_source", "test_source")]
    assert sources and all(s.startswith("photos:") and ",seed=1," in s for s in sources)
    assert len(set(sources)) == 2  # one labelled pool and one test pool, the same for every evaluation


def test_digits_pools_fit_their_splits():
    spec = "shapes:size=32,pool=1000,seed=0,val_pool=1000"
    assert variant_source(spec, "digits", 1) == "digits:size=32,pool=1000,seed=1,val_pool=197,split=train"
    assert variant_source("shapes:size=32,pool=1000,split=probe", "digits", 0) == \
        "digits:size=32,pool=300,split=probe,seed=0"
    doc = variant_study(_doc(), "digits", 0)
    ft = next(e for e in doc["evals"] if e["task"] == "finetune")
    assert (ft["epochs"], ft["warmup_epochs"], ft["batch_size"]) == (20, 2, 64)  # the demo's: 80 steps on 300
    assert ft["train_source"] == "digits:size=32,pool=300,seed=0,split=probe"
    study = parse_study(doc, "demo")
    assert len(study.runs) == 24 and {r.cfg.data.source for r in study.runs} == {
        "digits:size=32,pool=1000,seed=0,val_pool=197,split=train"}
    assert variant_source(spec, "photos", 0) == "photos" + spec[6:]  # generated: any pool, unchanged


def test_the_default_variant_is_the_builtin_study_with_its_run_ids():
    builtin = load_study(builtin_study(False))
    same = parse_study(variant_study(_doc(), "shapes", 0), "demo")
    assert [r.id for r in same.runs] == [r.id for r in builtin.runs]
    other = parse_study(variant_study(_doc(), "shapes", 1), "demo")
    assert not {r.id for r in other.runs} & {r.id for r in builtin.runs}
    assert {r.cfg.seed for r in other.runs} == {1}


def test_swinv2_demo_is_the_same_grid_on_the_swin_presets():
    vit, swin = load_study(builtin_study(False)), load_study(builtin_study(False, "swinv2"))
    assert {r.cfg.model.name for r in swin.runs} == {"swinv2-cpu-s", "swinv2-cpu-m", "swinv2-cpu-l"}
    assert len(swin.runs) == len(vit.runs) and [e["name"] for e in swin.evals] == [e["name"] for e in vit.evals] + ["knn-last"]
    assert set(BACKBONES) == {"vit", "swinv2"}


def test_default_directories_name_the_variant():
    assert str(default_out(False, "shapes", 0, "vit")) == "runs/demo"
    assert str(default_out(True, "photos", 2, "swinv2")) == "runs/demo-swinv2-photos-seed2-quick"


def test_bad_demo_options_are_one_line_errors(capsys):
    assert main(["demo", "--seed", "-1"]) == 2
    assert "--seed must be an integer in [0, 2^32), got -1" in capsys.readouterr().err
    assert main(["demo", "--data", "imagenet"]) == 2  # argparse's own usage error: exit 2, one line
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err
