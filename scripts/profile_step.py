"""Where a CPU train step spends its time: jaxbones (XLA's per-thunk trace) next to PyTorch
eager (``torch.profiler``), the same steps ``scripts.benchmark`` times.

    python -m scripts.profile_step --model resnet50 --batch 8 --steps 3

The JAX step (``scripts.benchmark.bench_jax``: forward + backward + AdamW, donated) runs
under ``jax.profiler.trace``. Every XLA CPU thunk (a fusion, a convolution, a dot, a
copy ...) is one trace event; the script joins the events with the optimised HLO (dumped by
this process) and buckets them by phase (forward, backward, optimizer; from the ``jvp`` /
``transpose`` in each instruction's ``op_name``), kind (convolution by kernel size, dot,
reduction, elementwise, data movement) and layer type (``bn``, ``conv``, ``attn`` ... from
the Flax module path). The PyTorch step (``bench_torch``, ``channels_last``) runs under
``torch.profiler``; its ops are bucketed the same way (``*Backward*`` is backward,
``optimizer.step`` the update). Times are per step (each thunk's median over the steps),
summed over threads: XLA may run independent thunks on two threads at once, so the buckets
can add up to more than the wall time printed on the first line. Thunks that XLA runs on
Eigen's kernels (its own dots and convolutions) are asynchronous: their events cover the
launch only, and their work shows as time between events. ``--mode infer`` profiles the
inference forward instead of the train step.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import statistics
import tempfile
import time

from jaxbones.hardware import retain_host_memory, tune_xla_cpu
from scripts.benchmark import bench_jax, bench_torch, loadavg

_INSTR = re.compile(r"^\s*(?:ROOT )?(\S+) = (\S+?)(?:\[[^\]]*\])?(?:\{[^}]*\})? (\S+?)\(")
_OPNAME = re.compile(r'op_name="([^"]*)"')
_CALLS = re.compile(r"calls=(%?[\w.\-]+)")
_WINDOW = re.compile(r"window=\{size=(\d+)x(\d+)")


def _parse_hlo(text: str) -> dict[str, dict]:
    """instruction name -> {'op', 'op_name', 'inner' (ops of a called fusion computation),
    'window'} for every instruction of the optimised module."""
    comps: dict[str, list[str]] = {}
    instrs: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and "{" in line and ("(" in line):
            current = line.split(" ", 1)[0].lstrip("%")
            if current == "ENTRY":
                current = line.split(" ", 2)[1].lstrip("%")
            comps[current] = []
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        name, op = m[1].lstrip("%"), m[3]
        win = _WINDOW.search(line)
        calls = _CALLS.search(line)
        opn = _OPNAME.search(line)
        instrs[name] = {
            "op": op,
            "op_name": opn[1] if opn else "",
            "calls": calls[1].lstrip("%") if calls else None,
            "window": f"{win[1]}x{win[2]}" if win else None,
        }
        if current is not None:
            comps[current].append(name)
    for d in instrs.values():
        inner = comps.get(d["calls"] or "", [])
        d["inner"] = [instrs[i]["op"] for i in inner if i in instrs]
        d["inner_window"] = next((instrs[i]["window"] for i in inner if instrs[i]["window"]), None)
        if not d["op_name"]:  # a fusion's metadata lives on its instructions
            d["op_name"] = next((instrs[i]["op_name"] for i in inner if instrs[i]["op_name"]), "")
    return instrs


def _kind(d: dict) -> str:
    ops = set(d["inner"]) | {d["op"]}
    if "convolution" in ops:
        # XLA's CPU pipeline rewrites every convolution to NHWC x HWIO, so the weight
        # gradient is told apart by its window: the output's spatial size, not 3x3 (no input
        # gradient is taken through the 7x7 stem)
        window = d["window"] or d["inner_window"] or ""
        if _phase(d["op_name"]) == "backward":
            return "conv 3x3 input grad" if window == "3x3" else "conv weight grad"
        return f"conv {window}"
    if "dot" in ops or d["op"] == "custom-call" and "ynn" in str(d):
        return "dot"
    if "reduce-window" in ops or "select-and-scatter" in ops:
        return "pool"
    if "scatter" in ops:
        return "scatter"
    if "reduce" in ops:
        return "reduce"
    if ops & {"copy", "transpose", "pad", "slice", "concatenate", "dynamic-slice"} and not ops & {
        "add",
        "multiply",
        "subtract",
        "divide",
        "maximum",
        "exponential",
    }:
        return "data movement"
    return "elementwise"


def _phase(op_name: str) -> str:
    if "transpose(" in op_name:
        return "backward"
    if "jvp(" in op_name or op_name.startswith("jit(fwd)/"):  # fwd: the inference program
        return "forward"
    return "optimizer/other"


_LAYERS = (
    "bn",
    "downsample",
    "conv",
    "norm",
    "attn",
    "mlp",
    "patch_embed",
    "head",
    "fc",
    "pool",
)


def _layer(op_name: str) -> str:
    parts = [p for p in op_name.split("/") if p and "(" not in p]
    for p in reversed(parts):
        low = p.lower()
        for tag in _LAYERS:
            if low.startswith(tag) or f"_{tag}" in low:
                return "bn" if tag in ("bn", "norm") and "attn" not in low else tag
    return "-"


def _xla_events(xplane: str) -> dict[str, list[float]]:
    import jax

    pd = jax.profiler.ProfileData.from_file(xplane)
    out: dict[str, list[float]] = collections.defaultdict(list)
    for plane in pd.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if line.name == "python":
                continue
            for e in line.events:
                n = e.name
                if n.startswith(("end:", "Thread", "Slinky", "ThunkExecutor", "Threadpool")):
                    continue
                out[n].append(e.duration_ns / 1e6)
    return out


def profile_jax(
    model: str, batch: int, steps: int, img_size: int | None, dump: str, mode: str = "train"
) -> dict:
    import jax

    p = bench_jax(
        model,
        batch=batch,
        dtype="float32",
        mode=mode,
        steps=0,
        warmup=0,
        overrides={},
        img_size=img_size,
    )
    for _ in range(2):
        p.run()
    trace = tempfile.mkdtemp(prefix="jaxbones_trace_")
    walls = []
    with jax.profiler.trace(trace):
        for _ in range(steps):
            t = time.perf_counter()
            p.run()
            walls.append(time.perf_counter() - t)
    xplane = glob.glob(f"{trace}/**/*.xplane.pb", recursive=True)[0]
    events = _xla_events(xplane)
    texts = sorted(
        glob.glob(f"{dump}/*jit_{'step' if mode == 'train' else 'fwd'}*after_optimizations.txt"),
        key=os.path.getsize,
    )
    if not texts:
        raise RuntimeError(
            "no optimised HLO was dumped: run scripts.profile_step as a fresh process "
            "(XLA reads XLA_FLAGS once, when the backend starts)"
        )
    with open(texts[-1]) as f:
        instrs = _parse_hlo(f.read())
    rows = []
    for name, durs in events.items():
        d = instrs.get(name)
        if d is None:
            continue  # runtime bookkeeping, not an HLO instruction
        # a thunk runs once per step: its median over the steps, so that one step that
        # faults its memory in again (tens of ms on every elementwise pass) does not
        # skew the shares
        per_step = statistics.median(durs) if len(durs) == steps else sum(durs) / steps
        rows.append((name, d, per_step))
    return {
        "rows": rows,
        "wall_ms": statistics.median(walls) * 1e3,
        "unmatched": sorted(set(events) - set(instrs))[:20],
    }


def profile_torch(
    model: str, batch: int, steps: int, img_size: int | None, mode: str = "train"
) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    p = bench_torch(
        model, batch=batch, dtype="float32", mode=mode, compile_=False, img_size=img_size
    )
    p.run()
    walls = []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            t = time.perf_counter()
            p.run()
            walls.append(time.perf_counter() - t)
    # phase of an op from its outermost ancestor: the optimizer step, the autograd engine
    # (backward) or neither (forward)
    rows: dict[tuple, list] = collections.defaultdict(lambda: [0.0, 0])
    for e in prof.events():
        anc = e
        names = []
        while anc is not None:
            names.append(anc.name)
            anc = anc.cpu_parent
        if any(n.startswith("Optimizer.") for n in names):
            phase = "optimizer/other"
        elif any("autograd::engine" in n or "Backward" in n for n in names):
            phase = "backward"
        else:
            phase = "forward"
        r = rows[(e.name, phase)]
        r[0] += e.self_cpu_time_total / 1e3 / steps
        r[1] += 1
    return {
        "rows": [(k, ph, ms, n // steps) for (k, ph), (ms, n) in rows.items()],
        "threads": torch.get_num_threads(),
        "wall_ms": statistics.median(walls) * 1e3,
    }


def _torch_kind(key: str) -> str:
    k = key.lower()
    if "conv" in k:
        kind = "conv"
    elif any(t in k for t in ("mm", "linear", "matmul", "bmm", "addmm")):
        kind = "dot"
    elif "batch_norm" in k or "native_batch_norm" in k:
        kind = "batch norm"
    elif "layer_norm" in k:
        kind = "layer norm"
    elif "pool" in k:
        kind = "pool"
    elif "softmax" in k or "attention" in k:
        kind = "attention/softmax"
    elif "gelu" in k:
        kind = "gelu"
    elif "relu" in k or "threshold" in k:
        kind = "relu"
    else:
        kind = "other"
    return kind


def report(
    model: str,
    batch: int,
    steps: int,
    img_size: int | None,
    top: int,
    dump: str,
    mode: str = "train",
) -> str:
    load0 = loadavg()
    t = time.perf_counter()
    j = profile_jax(model, batch, steps, img_size, dump, mode)
    tj = time.perf_counter() - t
    tor = profile_torch(model, batch, steps, img_size, mode)
    load1 = loadavg()
    what = "train step" if mode == "train" else "inference forward"
    out = [f"## {model}, batch {batch}, float32 {what} (load {load0} -> {load1})", ""]
    jtot = sum(r[2] for r in j["rows"])
    ttot = sum(ms for _, _, ms, _ in tor["rows"])
    out.append(
        f"Step wall time under the profiler (median of {steps}): jaxbones {j['wall_ms']:.0f} ms "
        f"(sum of thunk times {jtot:.0f} ms; profile incl. compile {tj:.0f} s), torch eager "
        f"{tor['wall_ms']:.0f} ms (sum of self CPU times {ttot:.0f} ms, "
        f"{tor['threads']} intra-op threads)."
    )
    out.append("")
    buckets: dict[tuple, float] = collections.defaultdict(float)
    for name, d, ms in j["rows"]:
        buckets[(_phase(d["op_name"]), _kind(d), _layer(d["op_name"]))] += ms
    out += [
        "### jaxbones by phase / kind / layer",
        "",
        "| phase | kind | layer | ms/step | % |",
        "|---|---|---|---|---|",
    ]
    for (ph, k, lay), ms in sorted(buckets.items(), key=lambda kv: -kv[1]):
        if ms / jtot < 0.003:
            continue
        out.append(f"| {ph} | {k} | {lay} | {ms:.1f} | {100 * ms / jtot:.1f} |")
    tb: dict[tuple, float] = collections.defaultdict(float)
    for key, ph, ms, _ in tor["rows"]:
        tb[(ph, _torch_kind(key))] += ms
    out += [
        "",
        "### torch by phase / kind",
        "",
        "| phase | kind | ms/step | % |",
        "|---|---|---|---|",
    ]
    for (ph, k), ms in sorted(tb.items(), key=lambda kv: -kv[1]):
        if ms / ttot < 0.003:
            continue
        out.append(f"| {ph} | {k} | {ms:.1f} | {100 * ms / ttot:.1f} |")
    out += [
        "",
        f"### jaxbones top {top} thunks",
        "",
        "| thunk | kind | phase | op_name | ms |",
        "|---|---|---|---|---|",
    ]
    for name, d, ms in sorted(j["rows"], key=lambda r: -r[2])[:top]:
        opn = d["op_name"].split("/", 1)[-1][-70:]
        out.append(f"| {name} | {_kind(d)} | {_phase(d['op_name'])} | `{opn}` | {ms:.1f} |")
    out += [
        "",
        f"### torch top {top} ops (self CPU)",
        "",
        "| op | phase | calls | ms |",
        "|---|---|---|---|",
    ]
    for key, ph, ms, n in sorted(tor["rows"], key=lambda r: -r[2])[:top]:
        out.append(f"| {key} | {ph} | {n} | {ms:.1f} |")
    if j["unmatched"]:
        out += ["", "trace events without an HLO instruction: " + ", ".join(j["unmatched"])]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--img-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--mode", choices=("train", "infer"), default="train")
    a = ap.parse_args(argv)
    retain_host_memory()  # as scripts.benchmark measures
    from jaxbones.registry import get_entry

    tune_xla_cpu([get_entry(a.model).family])  # as jaxbones.launch runs it
    dump = tempfile.mkdtemp(prefix="jaxbones_hlo_")
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to={dump} --xla_dump_hlo_as_text"
    )
    print(report(a.model, a.batch, a.steps, a.img_size, a.top, dump, a.mode))


if __name__ == "__main__":
    main()
