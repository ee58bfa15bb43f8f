"""``mimscale finetune`` (the evaluation runner) warns when an evaluation tests on its own training images, and
only then."""

from eval_runs import simmim_state, write_run

from mimscale.evaluate import finetune_main

PROBE = "shapes:size=32,pool=60,seed=0,split=probe"
TEST = "shapes:size=32,pool=30,seed=0,split=test"


def test_knn_on_its_training_images_is_warned_and_a_real_split_is_not(tmp_path, capsys):
    run = write_run(tmp_path / "vit", "vit-cpu-s", simmim_state("vit-cpu-s"), step=3)
    tiny = ["task=knn", "batch_size=30"]
    assert finetune_main([str(run), *tiny, f"train_source={PROBE}", f"test_source={TEST}"]) == 0
    assert "warning" not in capsys.readouterr().err
    same = PROBE.replace("pool=60", "pool=30")  # a prefix of the training pool
    assert finetune_main([str(run), *tiny, "name=same", f"train_source={PROBE}", f"test_source={same}"]) == 0
    err = capsys.readouterr().err
    assert "[evaluate] warning: same: train_source and test_source share images" in err
