"""PyTorch reference of ``experiments/fashion_mnist.py``: the same recipe, for time-to-accuracy.

Same as the jaxbones recipe (values read from its ``RECIPE``): timm ``resnet18`` with
``in_chans=1`` (timm's stem takes one input channel) and 10 classes; train transform
torchvision ``RandomResizedCrop(32, scale, ratio, bilinear)`` + ``RandomHorizontalFlip`` on
the 28x28 grayscale PIL image; eval ``Resize(32)`` of the whole image; normalisation by the
recipe's mean/std; AdamW (no weight decay on parameters with ndim <= 1), per-step linear
warm-up from 0 then cosine to 0 (optax's ``linear_schedule`` + ``cosine_decay_schedule``
as ``jaxbones.train.optim.make_schedule`` builds them), label smoothing, batch 128 with
the last partial batch dropped, evaluation on the 10,000 test images after every epoch
(468 steps). Data: the same IDX files (``jaxbones.data.datasets.find_fashion_mnist``).

Each evaluation appends a JSON line ``{"split": "eval", "step", "epoch", "accuracy",
"loss", "wall_s"}`` to ``--out`` (wall_s: seconds since the script started) and prints it.

Usage: python -m scripts.torch_fashion_mnist [--epochs 10] [--eval-every STEPS]
       [--out /tmp/torch_fashion_mnist.jsonl] [--workers 0] [--no-channels-last]
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # wall time counts from the start, imports included

import argparse
import json
import math

import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from experiments.fashion_mnist import MEAN, RECIPE, STD
from jaxbones.data.datasets import find_fashion_mnist, load_fashion_mnist
from jaxbones.hardware import retain_host_memory


class IdxDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i], "L")), int(self.labels[i])


def lr_at(step: int, peak: float, warmup: int, total: int) -> float:
    """jaxbones' schedule: linear 0 -> peak over `warmup` updates, then cosine to 0."""
    if step < warmup:
        return peak * step / warmup
    rest = max(total - warmup, 1)
    return peak * 0.5 * (1 + math.cos(math.pi * min(step - warmup, rest) / rest))


def evaluate(model, loader, channels_last: bool):
    model.eval()
    correct = total = 0
    loss = 0.0
    with torch.no_grad():
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            total += len(y)
    model.train()
    return correct / total, loss / total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=float, default=RECIPE["epochs"])
    p.add_argument("--eval-every", type=int, default=0, help="steps (0: once per epoch)")
    p.add_argument("--data-dir", default="", help="IDX directory (default: searched)")
    p.add_argument("--out", default="/tmp/torch_fashion_mnist.jsonl")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    retain_host_memory()  # as jaxbones.launch runs the recipe it is compared with
    r = RECIPE
    torch.manual_seed(args.seed)
    src = args.data_dir or find_fashion_mnist()
    size = r["image_size"]
    norm = [T.ToTensor(), T.Normalize(MEAN, STD)]
    train_tf = T.Compose(
        [
            T.RandomResizedCrop(size, r["rrc_scale"], r["rrc_ratio"], T.InterpolationMode.BILINEAR),
            T.RandomHorizontalFlip(r["hflip"]),
            *norm,
        ]
    )
    eval_tf = T.Compose([T.Resize(size, T.InterpolationMode.BILINEAR), *norm])
    train = IdxDataset(*load_fashion_mnist(src, "train"), train_tf)
    test = IdxDataset(*load_fashion_mnist(src, "test"), eval_tf)
    bs = r["batch_size"]
    loader = torch.utils.data.DataLoader(
        train, bs, shuffle=True, drop_last=True, num_workers=args.workers
    )
    test_loader = torch.utils.data.DataLoader(test, 256, num_workers=args.workers)
    model = timm.create_model("resnet18", in_chans=1, num_classes=10)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    decay = [q for q in model.parameters() if q.ndim > 1]
    no_decay = [q for q in model.parameters() if q.ndim <= 1]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": r["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=r["lr"],
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    steps_per_epoch = len(train) // bs
    total = max(math.ceil(args.epochs * steps_per_epoch), 1)
    warmup = min(round(r["warmup_epochs"] * steps_per_epoch), total - 1)
    eval_every = args.eval_every or steps_per_epoch
    out = open(args.out, "a")  # noqa: SIM115 - one line per evaluation, flushed
    step = 0
    model.train()
    while step < total:
        for x, y in loader:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, r["lr"], warmup, total)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), y, label_smoothing=r["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % eval_every == 0 or step == total:
                acc, eval_loss = evaluate(model, test_loader, args.channels_last)
                row = {
                    "split": "eval",
                    "step": step,
                    "epoch": step / steps_per_epoch,
                    "accuracy": acc,
                    "loss": eval_loss,
                    "train_loss": loss.item(),
                    "wall_s": time.perf_counter() - T0,
                }
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(json.dumps(row), flush=True)
            if step >= total:
                break
    out.close()
    return acc


if __name__ == "__main__":
    main()
