"""Config fuzz: any value for any key of any schema either validates or is one mimscale UserError (a single
line) — never another exception. Schemas: the pre-training Config, the EvalConfig of each task, a study file's
top-level keys, the model constructor keywords of each family and the bench / demo / study / analyze flags
(checked by the same Check objects as the config keys they map to)."""

import argparse
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimscale import config as C
from mimscale.errors import UserError
from mimscale.evaluate import config as E

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALARS = st.one_of(
    st.integers(-10**6, 10**6), st.sampled_from([-2**70, 2**32, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e300, -1e300, math.nan, math.inf]),
    st.booleans(), st.none(),
    st.text(max_size=8), st.sampled_from(["../x", "/abs", "..", "${oc.env:HOME}", "${name}", "${oc.env:NOPE_X}",
                                          "a/b", "", " ", "1.5%", "3,4", "{a: 1}"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=4), SCALARS, max_size=2))


def _text(value) -> str:
    """The value as typed after ``key=`` on a command line (YAML flow syntax)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _one_line_or_pass(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except UserError as e:
        assert str(e) and "\n" not in str(e), repr(str(e))


@FUZZ
@given(key=st.sampled_from(sorted(C.KEYS)), value=VALUES)
def test_pretraining_config(key, value):
    _one_line_or_pass(C.load_config, None, ["train.iters=10", f"{key}={_text(value)}"])


@FUZZ
@given(task=st.sampled_from(E.TASKS), key=st.sampled_from(sorted(E.KEYS)), value=VALUES)
def test_evaluation_config_per_task(task, key, value):
    _one_line_or_pass(E.load_eval_config, None, [f"task={task}", f"{key}={_text(value)}"])


@FUZZ
@given(task=st.sampled_from(E.TASKS), key=st.sampled_from(sorted(E.KEYS)), value=VALUES)
def test_evaluation_entry_of_a_study(task, key, value):
    _one_line_or_pass(E.from_spec, {"task": task, key: value})


@FUZZ
@given(key=st.sampled_from(("name", "description", "base_config", "base", "axes", "zip", "evals", "out", "runs")),
       value=VALUES)
def test_study_file_top_level_keys(key, value):
    from mimscale.study.spec import TOP_KEYS, parse_study

    assert key in TOP_KEYS
    doc = {"name": "fuzz", "base": {"train.iters": 4}, "axes": {"seed": [0, 1]}, key: value}
    _one_line_or_pass(parse_study, doc, "fuzz.yaml")


def _family_params():
    import inspect

    from mimscale.models.registry import FAMILIES, family_module

    return [(f, p) for f in FAMILIES for p in inspect.signature(family_module(f).MODEL_CLASS).parameters]


@FUZZ
@given(data=st.data(), value=VALUES)
def test_model_constructor_keywords(data, value):
    from mimscale.models.registry import check_kwargs

    family, param = data.draw(st.sampled_from(_family_params()))
    _one_line_or_pass(check_kwargs, family, {param: value})


INTS = st.one_of(st.integers(-10**6, 10**6), st.sampled_from([-2**70, 2**32, 2**64, 10**30]))


@FUZZ
@given(batch=INTS, img=INTS, steps=INTS, threads=INTS, workers=INTS,
       device=st.one_of(st.text(max_size=8), st.sampled_from(["auto", "cpu", "cuda:1", "tpu", "cuda:x"])))
def test_bench_flags(batch, img, steps, threads, workers, device):
    from mimscale.bench.cli import check_args

    _one_line_or_pass(check_args, argparse.Namespace(batch=batch, img_size=img, steps=steps, threads=threads,
                                                     workers=workers, device=device))


@FUZZ
@given(seed=INTS, workers=st.one_of(st.none(), INTS))
def test_demo_flags(seed, workers):
    from mimscale.demo.cli import check_args

    _one_line_or_pass(check_args, argparse.Namespace(seed=seed, workers=workers))


@FUZZ
@given(workers=INTS, threads=INTS, gpus=INTS, cpus=INTS, timeout=INTS, par=INTS,
       mem=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
def test_study_run_flags(workers, threads, gpus, cpus, timeout, par, mem):
    from mimscale.study.cli import check_run_args

    _one_line_or_pass(check_run_args, argparse.Namespace(workers=workers, threads=threads, gpus_per_run=gpus,
                                                         cpus_per_run=cpus, timeout_min=timeout,
                                                         array_parallelism=par, mem_gb=mem))


@FUZZ
@given(seed=INTS, n_boot=INTS, fit_boot=INTS,
       tolerance=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
def test_analyze_flags(seed, n_boot, fit_boot, tolerance):
    from mimscale.analysis.cli import check_common_args

    _one_line_or_pass(check_common_args, argparse.Namespace(seed=seed, n_boot=n_boot, fit_boot=fit_boot,
                                                            tolerance=tolerance))


@pytest.mark.parametrize("flag_value, message", [
    (("--seed", -1), "--seed must be an integer in [0, 2^32), got -1"),
    (("--workers", 0), "--workers must be at least 1"),
])
def test_a_demo_flag_and_the_config_key_it_becomes_fail_alike(flag_value, message):
    """The demo's --seed is every run's ``seed``: one Check, the same words."""
    from mimscale.demo.cli import check_args

    flag, value = flag_value
    ns = argparse.Namespace(seed=0, workers=None)
    setattr(ns, flag.lstrip("-"), value)
    with pytest.raises(UserError) as e:
        check_args(ns)
    assert message in str(e.value)
    if flag == "--seed":
        with pytest.raises(UserError) as e:
            C.load_config(None, ["train.iters=1", f"seed={value}"])
        assert str(e.value) == message.replace("--seed", "seed")


def test_study_run_accepts_a_cpu_partition_and_refuses_negative_gpus():
    """--gpus-per-run 0 is the CPU partition (the Slurm tests use it); only a negative count is refused."""
    from mimscale.study.cli import check_run_args

    args = dict(workers=1, threads=0, cpus_per_run=1, timeout_min=10, array_parallelism=1, mem_gb=None)
    check_run_args(argparse.Namespace(gpus_per_run=0, **args))
    with pytest.raises(UserError, match="--gpus-per-run must be >= 0"):
        check_run_args(argparse.Namespace(gpus_per_run=-1, **args))
