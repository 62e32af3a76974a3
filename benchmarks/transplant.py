"""Parity check, not a timing: the paper's code's weights in geosynth's networks.

Builds each network of the code published with the paper (gbaier/rs_img_synth:
``ours`` = its ``SPADEResnetEncoderDecoder``, ``spade``, ``pix2pix`` and
``concat``, its two-scale discriminator and U-Net) from a checkout OUTSIDE this
repository (``--authors PATH``; that code has no licence, so nothing of it is
copied here), saves its state dicts as its ``train.py`` does (with a
``config.yml``), imports them with ``geosynth import-weights`` and compares:

- generator and discriminator outputs in eval and in train mode (BatchNorm
  batch statistics, one spectral-norm power iteration), at 64 and 256 px;
- one full training step from identical weights: the paper's code's
  ``Trainer.g_one_step`` and ``d_one_step`` (G and D wrapped in DDP on a
  one-process gloo group, as its ``train.py``) against geosynth's
  ``GanTask._authors_steps`` (``--d-step authors``), every gradient and every
  weight's move;
- the U-Net's forward, its BCE loss and one Adam step.

Figures are ``max |ours - theirs| / max |theirs|`` per tensor, the worst
over all tensors. Biases right before a normalisation have an analytically
zero gradient; where their gradients are pure rounding (below 1e-6 of the
largest) they are left out of the gradient figure and reported.

One adaptation of their code to today's torch: its ``Adam(..., betas=(0,
0.9))`` (an int and a float) is refused by torch >= 2.1, so its trainer gets
the same betas as floats.

Run: python benchmarks/transplant.py --authors /path/to/rs_img_synth [--cap 16]
     [--sizes 64,256] [--kinds ours,spade,pix2pix,concat] [--json out.json]
(cap 64 at 64 px needs about 24 GB for all four kinds in one process: run them
one ``--kinds`` at a time.)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import types
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from geosynth.ml.networks.configs import DiscriminatorConfig, GeneratorConfig, UNetConfig
from geosynth.ml.networks.discriminator import build_discriminator, generator_condition
from geosynth.ml.networks.generators import build_generator
from geosynth.ml.networks.unet import build_unet
from geosynth.ml.training.checkpoint import load_checkpoint
from geosynth.ml.training.config import GanConfig
from geosynth.ml.training.import_weights import (
    AUTHORS_CHANNELS,
    DISCRIMINATOR_RULES,
    GENERATOR_RULES,
    UNET_RULES,
    import_weights,
    rename,
)
from geosynth.ml.training.train import GanTask
from geosynth.ml.training.trainer import adam

N_LABELS = AUTHORS_CHANNELS["nrw"]["seg"]
INPUTS = {"ours": ["dem", "seg"], "spade": ["seg"], "pix2pix": ["dem"], "concat": ["dem", "seg"]}
LAMBDA_FM = 5.0


def rel(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30))


class Authors:
    """The paper's code, imported from its checkout."""

    def __init__(self, path: Path, cap: int):
        sys.path.insert(0, str(path))
        import models.discriminator
        import models.generator
        import models.unet
        import trainer

        class Adam(torch.optim.Adam):  # their betas (0, 0.9) as floats, for torch >= 2.1
            def __init__(self, params, lr, betas, **kw):
                super().__init__(params, lr=lr, betas=tuple(float(b) for b in betas), **kw)

        shim = types.SimpleNamespace(**{k: getattr(torch, k) for k in dir(torch) if k[0] != "_"})
        shim.optim = types.SimpleNamespace(Adam=Adam)
        trainer.torch = shim
        self.G, self.D, self.U, self.Trainer = (
            models.generator, models.discriminator, models.unet, trainer.Trainer,
        )  # fmt: skip
        self.cap = cap

    def generator(self, kind: str):
        c = self.cap
        if kind == "spade":
            return self.G.SPADEGenerator(N_LABELS, c * 16, 3, n_up_stages=4)
        if kind == "pix2pix":
            return self.G.ResnetEncoderDecoder(1, c, 3, n_downsample=4)
        if kind == "concat":
            return self.G.ResnetEncoderDecoder(1 + N_LABELS, c, 3, n_downsample=4)
        return self.G.SPADEResnetEncoderDecoder(1, N_LABELS, c, 3, n_downsample=4)

    def discriminator(self, kind: str):
        inputs = INPUTS[kind]
        cond = (N_LABELS if "seg" in inputs else 0) + (1 if "dem" in inputs else 0)
        scales = [self.D.PatchGAN(input_nc=cond + 3, init_nc=64) for _ in range(2)]
        return self.D.Multiscale(scales)

    def save_run(self, kind: str, folder: Path, size: int) -> None:
        """A run folder as their train.py leaves it (state dicts of DDP-wrapped networks)."""
        g, d = self.generator(kind), self.discriminator(kind)
        with torch.no_grad():  # BatchNorm running statistics that are not the defaults
            for seed in (10, 11):
                g(their_input(kind, sample(size, seed)))
        folder.mkdir(parents=True)
        config = {
            "model": {"model_cap": self.cap, "n_sampling": 4, "n_scales": 2},
            "training": {"crop": size, "resize": size, "batch_size": 2, "epochs": 1,
                         "lbda": LAMBDA_FM},
            "dataset": {"name": "nrw", "root": "./data/nrw", "input": INPUTS[kind],
                        "output": "rgb"},
        }  # fmt: skip
        if kind == "concat":
            config["model"]["concat"] = True
        (folder / "config.yml").write_text(yaml.safe_dump(config))
        for name, net in (("model_gnet.pt", g), ("model_dnet.pt", d)):
            torch.save({"module." + k: v for k, v in net.state_dict().items()}, folder / name)

    def load_run(self, kind: str, folder: Path):
        """Fresh networks from the saved state (never deep copies: their SPADE blocks' wrapped
        forwards stay bound to the original modules)."""
        g, d = self.generator(kind), self.discriminator(kind)
        for name, net in (("model_gnet.pt", g), ("model_dnet.pt", d)):
            state = torch.load(folder / name, weights_only=True)
            net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
        return g, d


def sample(size: int, seed: int, batch: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    classes = torch.randint(0, N_LABELS, (batch, size, size), generator=g)
    return {
        "seg": F.one_hot(classes, N_LABELS).permute(0, 3, 1, 2).float(),
        "dem": torch.randn(batch, 1, size, size, generator=g) * 10 + 50,
        "rgb": torch.rand(batch, 3, size, size, generator=g),  # [0, 1], as their ToTensor
    }


def their_input(kind: str, s: dict) -> dict:
    return {k: s[k] for k in INPUTS[kind]}


def our_inputs(kind: str, s: dict):
    return (
        s["seg"] if "seg" in INPUTS[kind] else None,
        s["dem"] if "dem" in INPUTS[kind] else None,
    )


def imported(folder: Path, out: Path):
    """Builders of fresh geosynth networks from ``geosynth import-weights`` of ``folder``."""
    import_weights(folder, out, "unused.zarr")
    payload = load_checkpoint(out / "checkpoints" / "last.pt")
    g_entry, d_entry = payload["models"]["generator"], payload["models"]["discriminator"]

    def g():
        net = build_generator(GeneratorConfig.from_dict(g_entry["config"]))
        net.load_state_dict(g_entry["state"])
        return net

    def d():
        net = build_discriminator(DiscriminatorConfig.from_dict(d_entry["config"]))
        net.load_state_dict(d_entry["state"])
        return net

    return g, d, GanConfig.from_dict(payload["config"])


def forwards(authors: Authors, kind: str, size: int, tmp: Path) -> dict[str, float]:
    folder = tmp / f"{kind}_{size}"
    torch.manual_seed(0)
    authors.save_run(kind, folder, size)
    fresh_g, fresh_d, _ = imported(folder, tmp / f"geosynth_{kind}_{size}")
    s, figures = sample(size, 1), {}
    for mode in ("eval", "train"):
        theirs, their_d = authors.load_run(kind, folder)
        ours, our_d = fresh_g(), fresh_d()
        for net in (theirs, their_d, ours, our_d):
            net.train(mode == "train")
        their_d.return_intermed = True
        with torch.no_grad():
            figures[f"G {mode}"] = rel(ours(*our_inputs(kind, s)), theirs(their_input(kind, s)))
            a = their_d(their_input(kind, s), s["rgb"])
            o = our_d(generator_condition(*our_inputs(kind, s)), s["rgb"])
        flat = [f for fs in o.features for f in fs]
        pairs = [*zip(o.final, a.final, strict=True), *zip(flat, a.features, strict=True)]
        figures[f"D {mode}"] = max(rel(x, y) for x, y in pairs)
    return figures


def one_step(authors: Authors, kind: str, tmp: Path) -> dict:
    folder = tmp / f"{kind}_64"
    if not folder.exists():
        torch.manual_seed(0)
        authors.save_run(kind, folder, 64)
    fresh_g, fresh_d, config = imported(folder, tmp / f"step_{kind}")
    s = sample(64, 3)
    grads: dict[str, dict[str, dict]] = {"theirs": {}, "ours": {}}

    def record(optimizer, net, side: str, name: str) -> None:
        step = optimizer.step

        def recorded(*args, **kwargs):
            grads[side][name] = {n: p.grad.clone() for n, p in net.named_parameters()
                                 if p.grad is not None}  # fmt: skip
            return step(*args, **kwargs)

        optimizer.step = recorded

    # theirs: their Trainer on DDP-wrapped networks, as their train.py
    g, d = authors.load_run(kind, folder)
    ddp = torch.nn.parallel.DistributedDataParallel
    trainer = authors.Trainer(ddp(g), ddp(d), src=INPUTS[kind], dest="rgb", feat_loss=LAMBDA_FM)
    record(trainer.g_optim, g, "theirs", "G"), record(trainer.d_optim, d, "theirs", "D")
    before = {"G": {k: v.clone() for k, v in g.state_dict().items()},
              "D": {k: v.clone() for k, v in d.state_dict().items()}}  # fmt: skip
    trainer.g_one_step(s)
    trainer.d_one_step(s)
    theirs_after = {"G": g.state_dict(), "D": d.state_dict()}

    # ours: GanTask's --d-step authors on the imported networks, its optimizers as __init__
    og, od = fresh_g().train(), fresh_d().train()
    task = object.__new__(GanTask)
    ctx = types.SimpleNamespace(cuda=False, device=torch.device("cpu"), is_main=True)
    task.config, task.ctx, task.g_ema = config, ctx, None
    task.g_net = task.g = og
    task.d_net = task.d = task.d_frozen = od
    fused = config.d_step != "authors"
    task.opt_g = adam(og.parameters(), config.lr_g, config.betas, ctx, fused=fused)
    task.opt_d = adam(od.parameters(), config.lr_d, config.betas, ctx, fused=fused)
    record(task.opt_g, og, "ours", "G"), record(task.opt_d, od, "ours", "D")
    mine_before = {"G": {k: v.clone() for k, v in og.state_dict().items()},
                   "D": {k: v.clone() for k, v in od.state_dict().items()}}  # fmt: skip
    labels, raster = our_inputs(kind, s)
    fake = task.g(labels, raster, None)
    task._authors_steps(labels, raster, None, generator_condition(labels, raster), fake, s["rgb"])
    mine_after = {"G": og.state_dict(), "D": od.state_dict()}

    result = {"grad": 0.0, "move": 0.0, "rounding-only biases": []}
    for net, rules in (("G", GENERATOR_RULES), ("D", DISCRIMINATOR_RULES)):
        largest = max(float(t.abs().max()) for t in grads["theirs"][net].values())
        for name, theirs_grad in grads["theirs"][net].items():
            mine = rename(name, rules)
            analytic_zero = name.endswith("bias") and theirs_grad.abs().max() < 1e-6 * largest
            e = rel(grads["ours"][net][mine], theirs_grad)
            if analytic_zero and e:
                result["rounding-only biases"].append(f"{net} {name}")
            elif e > result["grad"]:
                result["grad"], result["grad at"] = e, f"{net} {name}"
            moved = theirs_after[net][name] - before[net][name]
            if moved.abs().max() > 0 and not analytic_zero:
                e = rel(mine_after[net][mine] - mine_before[net][mine], moved)
                if e > result["move"]:
                    result["move"], result["move at"] = e, f"{net} {name}"
    return result


def unet(authors: Authors, tmp: Path) -> dict:
    torch.manual_seed(0)
    theirs = authors.U.UNet(3, N_LABELS)
    path = tmp / "unet_state.pt"
    torch.save(theirs.state_dict(), path)
    import_weights(path, tmp / "geosynth_unet", "unused.zarr")
    entry = load_checkpoint(tmp / "geosynth_unet" / "checkpoints" / "last.pt")["models"]["unet"]
    ours = build_unet(UNetConfig.from_dict(entry["config"]))
    ours.load_state_dict(entry["state"])
    s = sample(64, 5)
    a, o = theirs(s["rgb"]), ours(s["rgb"] * 2 - 1).logits  # geosynth's input is [-1, 1]
    bce = torch.nn.BCEWithLogitsLoss()
    loss_a, loss_o = bce(a, s["seg"]), bce(o, s["seg"])
    before = {k: v.clone() for k, v in theirs.state_dict().items()}
    mine_before = {k: v.clone() for k, v in ours.state_dict().items()}
    for net, loss in ((theirs, loss_a), (ours, loss_o)):  # their train_unet.py's optimizer
        opt = torch.optim.Adam(net.parameters(), lr=2e-4, weight_decay=5e-4)
        opt.zero_grad()
        loss.backward()
        opt.step()
    move = max(
        rel(ours.state_dict()[rename(k, UNET_RULES)] - mine_before[rename(k, UNET_RULES)],
            theirs.state_dict()[k] - before[k])
        for k in before
    )  # fmt: skip
    return {"forward": rel(o, a), "loss": abs(float(loss_o - loss_a)), "adam step": move}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", type=Path, required=True, help="checkout of rs_img_synth")
    parser.add_argument("--cap", type=int, default=16)
    parser.add_argument("--sizes", default="64,256")
    parser.add_argument("--kinds", default="ours,spade,pix2pix,concat")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if not (args.authors / "models" / "arch.py").is_file():
        parser.error(f"--authors {args.authors}: no models/arch.py (a checkout of rs_img_synth)")
    authors = Authors(args.authors.resolve(), args.cap)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    kinds, sizes = args.kinds.split(","), [int(s) for s in args.sizes.split(",")]
    figures: dict = {"cap": args.cap, "torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="transplant_") as tmp:
        tmp = Path(tmp)
        for kind in kinds:
            for size in sizes:
                figures[f"{kind} {size} px"] = forwards(authors, kind, size, tmp)
                print(f"{kind:8s} {size:4d} px", *(f"{k} {v:.1e}" for k, v in
                      figures[f"{kind} {size} px"].items()), sep="  ", flush=True)  # fmt: skip
                gc.collect()
            figures[f"{kind} step"] = step = one_step(authors, kind, tmp)
            print(f"{kind:8s} step     grad {step['grad']:.1e}  weight move {step['move']:.1e}"
                  f"  rounding-only biases: {len(step['rounding-only biases'])}", flush=True)  # fmt: skip
            gc.collect()
        figures["unet"] = u = unet(authors, tmp)
        print(f"unet     forward {u['forward']:.1e}  loss {u['loss']:.1e}  "
              f"adam step {u['adam step']:.1e}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
