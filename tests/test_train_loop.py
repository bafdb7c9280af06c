"""End-to-end runs of ``python -m jaxbones.launch`` in subprocesses (a tiny ResNet on the
in-memory 'synthetic' dataset): bit-identical determinism, exact resume after SIGTERM and
SIGKILL at random steps, restore onto another device count, the digits pipeline resumed
from 1 process on 2 gloo processes (preempted there) and back, and
the error messages for bad keys / another model's checkpoint."""

import json
import os
import random
import signal

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests import subprocesses

STEPS = 8
BASE = [
    "--config.model=resnet18",
    "--config.model_kwargs.layers=(1,1,1,1)",
    "--config.dataset=synthetic",
    "--config.num_classes=10",
    "--config.synthetic_size=64",
    "--config.image_size=32",
    "--config.global_batch_size=16",
    f"--config.num_steps={STEPS}",
    "--config.log_every=1",
    "--config.ckpt_every=2",
    "--config.eval_batch_size=16",
    "--config.progress=false",
    "--config.plot=false",
    "--config.optimizer.warmup_steps=2",
]


def _launch(workdir, *extra, devices=2, cache=None, timeout=900, env_extra=None, wait=True):
    args = [*BASE, f"--config.workdir={workdir}", f"--config.compile_cache={cache or ''}", *extra]
    p = subprocesses.start("jaxbones.launch", args, devices, env_extra)
    if not wait:
        return p
    out, _ = p.communicate(timeout=timeout)
    return p.returncode, out


def _curve(workdir):
    """Train loss per step; after a resume the last value written for a step wins."""
    rows = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["split"] == "train":
                rows[r["step"]] = r["loss"]
    return [rows[s] for s in sorted(rows)]


def _params(workdir, step=STEPS):
    mngr = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"), options=ocp.CheckpointManagerOptions(read_only=True)
    )
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    mngr.close()
    return jax.tree_util.tree_leaves(out["state"]["params"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("xla_cache"))
    wd = str(tmp_path_factory.mktemp("ref"))
    rc, out = _launch(wd, cache=cache)
    assert rc == 0, out
    return {"workdir": wd, "cache": cache, "curve": _curve(wd)}


def test_determinism_and_exact_resume_after_sigterm_and_sigkill(reference, tmp_path):
    ref = reference["curve"]
    assert len(ref) == STEPS and ref[-1] < ref[0]
    wd = str(tmp_path / "run")
    rng = random.Random()
    term_at = rng.choice([3, 5])  # between checkpoints (every 2 steps)
    kill_at = rng.randrange(term_at + 1, STEPS)
    print(f"SIGTERM at step {term_at}, SIGKILL at step {kill_at}")
    rc, out = _launch(
        wd,
        f"--config.debug_signal_at_step={term_at}",
        "--config.debug_signal=SIGTERM",
        cache=reference["cache"],
    )
    assert rc == 0, out
    assert "SIGTERM" in out and os.path.isdir(os.path.join(wd, "checkpoints", str(term_at))), out
    rc, out = _launch(wd, f"--config.debug_signal_at_step={kill_at}", cache=reference["cache"])
    assert rc == -signal.SIGKILL, out
    assert f"resumed from {wd}/checkpoints step {term_at}" in out, out
    rc, out = _launch(wd, cache=reference["cache"])
    assert rc == 0 and "resumed" in out, out
    # same seed, interrupted twice: the loss curve and the final parameters are bit-identical
    assert _curve(wd) == ref
    for a, b in zip(_params(wd), _params(reference["workdir"]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_restore_onto_another_device_count(reference, tmp_path):
    import shutil

    wd = str(tmp_path / "four")
    shutil.copytree(reference["workdir"], wd)
    for s in (STEPS, STEPS - 2):  # resume the 2-device run's step-4 checkpoint on 4 devices
        shutil.rmtree(os.path.join(wd, "checkpoints", str(s)))
    os.remove(os.path.join(wd, "metrics.jsonl"))
    rc, out = _launch(wd, devices=4)
    assert rc == 0 and "resumed" in out and '"devices": 4' in out, out
    np.testing.assert_allclose(_curve(wd), reference["curve"][4:], rtol=2e-4)


def _launch_processes(workdir, n, *extra, devices, cache=None):
    """``n`` local processes (gloo collectives) of one run; returns their outputs."""
    args = [*BASE, f"--config.workdir={workdir}", f"--config.compile_cache={cache or ''}", *extra]
    return subprocesses.run_processes("jaxbones.launch", args, n, devices)


def _truncate(src, dst, keep_step):
    """A copy of run ``src`` as if it had been stopped right after checkpoint ``keep_step``."""
    import shutil

    shutil.copytree(src, dst)
    for name in os.listdir(os.path.join(dst, "checkpoints")):
        if name.isdigit() and int(name) > keep_step:
            shutil.rmtree(os.path.join(dst, "checkpoints", name))
    os.remove(os.path.join(dst, "metrics.jsonl"))


def test_digits_stream_is_topology_free_and_resumes_on_another_process_count(tmp_path):
    """The grain digits pipeline across topologies, in three launches. A 1 process x 2 devices
    run is the reference. Its step-2 checkpoint resumes on 2 processes x 1 device, which are
    preempted (SIGTERM) after step 5 and agree to checkpoint there; that checkpoint, written by
    2 processes, resumes on 1 process to the end. Both resumed legs give the reference's losses:
    the two topologies read the same global batches from any step and restore each other's
    checkpoints (the compiled programs come from the shared compilation cache)."""
    from jaxbones import data

    data_dir = str(tmp_path / "tfds")
    data.ensure_local_dataset("digits", data_dir)
    digits = [
        "--config.dataset=digits",
        f"--config.data_dir={data_dir}",
        "--config.num_steps=6",
        "--config.keep_ckpts=4",
    ]
    one, mixed = str(tmp_path / "one"), str(tmp_path / "mixed")
    cache = str(tmp_path / "xla_cache")
    rc, out = _launch(one, *digits, devices=2, cache=cache)
    assert rc == 0, out
    ref = _curve(one)
    assert len(ref) == 6

    _truncate(one, mixed, 2)
    sigterm_at_5 = [
        "--config.debug_signal_at_step=5",
        "--config.debug_signal=SIGTERM",
        "--config.preemption_check_every=1",
    ]
    outs = _launch_processes(mixed, 2, *digits, *sigterm_at_5, devices=1, cache=cache)
    assert '"process_count": 2' in outs[0], outs[0]
    assert f"resumed from {mixed}/checkpoints step 2" in outs[0], outs[0]
    assert "SIGTERM" in outs[0] and os.path.isdir(os.path.join(mixed, "checkpoints", "5"))
    np.testing.assert_allclose(_curve(mixed), ref[2:5], rtol=1e-5)

    rc, out = _launch(mixed, *digits, devices=2, cache=cache)
    assert rc == 0 and f"resumed from {mixed}/checkpoints step 5" in out, out
    np.testing.assert_allclose(_curve(mixed), ref[2:], rtol=1e-5)


def test_bad_config_key_fails_with_suggestion(tmp_path):
    rc, out = _launch(str(tmp_path), "--config.optimizer.lrr=0.1", timeout=120)
    assert rc != 0 and "did you mean lr" in out


def test_checkpoint_of_another_model_names_the_fix(reference):
    from jaxbones.registry import init_shapes
    from jaxbones.train.checkpoint import load_params

    target = jax.tree_util.tree_map(
        lambda s: np.zeros(s.shape, s.dtype), init_shapes("resnet50", num_classes=10)["params"]
    )
    with pytest.raises(ValueError, match="'resnet18' checkpoint.*--config.model"):
        load_params(reference["workdir"], target, "resnet50")
    # the same model loads
    tgt18 = jax.tree_util.tree_map(
        lambda s: np.zeros(s.shape, s.dtype),
        init_shapes("resnet18", num_classes=10, layers=(1, 1, 1, 1))["params"],
    )
    _, report = load_params(reference["workdir"], tgt18, "resnet18")
    assert report["copied"] == report["total"] and report["step"] == STEPS
