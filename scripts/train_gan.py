"""Train the bundled toy-faces StyleGAN2 (128 x 128) on a CPU, export it, and gate it.

`python -m scripts.train_gan [--minutes N] [--resume] [--out assets/models/toy_gan]`
`python -m scripts.train_gan --stage eval [--out assets/models/toy_gan]`

Why not a plain GAN run: the machine this ships from is a shared 2-core CPU where one forward +
backward of even a 0.3 M-parameter 128 px generator at batch 16 takes seconds, so a StyleGAN2
adversarial run (tens of thousands of steps) cannot converge in the time available. The generator
is trained instead as a decoder of the toy world's latent-determined faces
(`stabledrag.toy.gan_model`: `face_from_z`, `render_batch`) with a weighted L1 loss ("recon"
loss). A first model with one eye spacing for both eyes could not move one eye alone; it was
fine-tuned into the world with independent part offsets from its checkpoint. The network is the
project's own StyleGAN2 (`stabledrag.gan.networks`, `gan_model.toy_generator_config`), exported
as `G_ema` in the native safetensors format.

The adversarial path is implemented too (`--adv-weight > 0`): non-saturating logistic loss,
lazy R1 on the StyleGAN2-style residual discriminator (`stabledrag.gan.discriminator`), usable
alone (`--recon-weight 0`) on a machine with more compute, or as a sharpening term.

Threads: keep `--threads 1` on a shared, oversubscribed CPU. With 2 threads and other jobs
running, OpenMP's barriers wait on a descheduled partner thread: a step measured 7.5 s with 2
threads and 0.4 s with 1 on the 2-core build machine.

Files under `--run-dir` (default `runs/toy_gan/`): `log.txt`, `checkpoint.pt` (every
`--ckpt-minutes`, atomic; `--resume` continues from it), `samples_XXXXXX.png` (fixed latents,
psi 1.0 top rows / 0.7 bottom rows). The model is exported to `--out` whenever the quick gate
(detector on `--gate-n` samples) does not get worse, and at the end.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stabledrag.gan.checkpoints import load_native, save_native
from stabledrag.gan.discriminator import Discriminator
from stabledrag.gan.networks import Generator, GeneratorConfig, to_uint8
from stabledrag.paths import REPO_ROOT
from stabledrag.toy.detect import detect
from stabledrag.toy.gan_model import discriminator_config, face_from_z, render_batch, toy_generator_config
from stabledrag.toy.render import render
from stabledrag.visualize import tile

log = logging.getLogger(__name__)

DEFAULT_RUN_DIR = REPO_ROOT / "runs" / "toy_gan"
DEFAULT_OUT = REPO_ROOT / "assets" / "models" / "toy_gan"
CHECKPOINT_NAME = "checkpoint.pt"
TRAINING_INFO_NAME = "training.json"


# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass
class TrainConfig:
    """Training settings (recorded in checkpoints and the exported `training.json`)."""

    batch: int = 8
    lr: float = 0.003
    betas: tuple[float, float] = (0.9, 0.99)
    recon_weight: float = 1.0
    adv_weight: float = 0.0
    mapping_lr_scale: float = 10.0  # learning-rate factor of the mapping network (see Trainer)
    part_weight: float = 6.0        # extra L1 weight on eye / mouth pixels (small but decisive parts)
    coarse_weight: float = 1.0      # L1 on 4x average-pooled images: fast coarse gradients
    d_lr: float = 0.002
    r1_gamma: float = 0.2
    r1_interval: int = 16
    ema_nimg: int = 2000            # EMA half-life in images (with a 5% ramp-up, as StyleGAN2)
    w_avg_beta: float = 0.995
    seed: int = 0



# ----------------------------------------------------------------------------------------------
# Training state


class Trainer:
    """Holds G, G_ema, D, their optimisers and the counters; one `step()` = one G (and D) update."""

    def __init__(self, gcfg: GeneratorConfig, tcfg: TrainConfig) -> None:
        torch.manual_seed(tcfg.seed)
        self.gcfg, self.tcfg = gcfg, tcfg
        self.G = Generator(gcfg).train().requires_grad_(True)
        # The last block's toRGB starts at zero so early images are the smooth up-sampled
        # lower-resolution image (the low-res blocks learn the layout first).
        last = getattr(self.G.synthesis, f"b{gcfg.img_resolution}")
        with torch.no_grad():
            last.torgb.weight.mul_(0.1)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # The mapping's parameters get `mapping_lr_scale` x the learning rate: StyleGAN2's 0.01
        # mapping multiplier keeps adversarial training stable, but a decoder must learn how z
        # drives the face quickly (with a 0.1 multiplier the images ignored z for thousands of steps).
        mapping = list(self.G.mapping.parameters())
        ids = {id(p) for p in mapping}
        rest = [p for p in self.G.parameters() if id(p) not in ids]
        self.opt_G = torch.optim.Adam([{"params": rest, "lr": tcfg.lr},
                                       {"params": mapping, "lr": tcfg.lr * tcfg.mapping_lr_scale}],
                                      lr=tcfg.lr, betas=tcfg.betas)
        self.D: Optional[Discriminator] = None
        self.opt_D = None
        if tcfg.adv_weight > 0:
            self.D = Discriminator(discriminator_config(gcfg)).train()
            c = tcfg.r1_interval / (tcfg.r1_interval + 1)  # lazy-regularisation correction
            self.opt_D = torch.optim.Adam(self.D.parameters(), lr=tcfg.d_lr * c, betas=(0.0, 0.99 ** c))
        self.step_idx = 0
        self.nimg = 0
        self.train_seconds = 0.0
        self.rng = np.random.default_rng(tcfg.seed)
        self.best_gate: float = -1.0
        self.last_stats: dict[str, float] = {}

    # -- losses ---------------------------------------------------------------------------------
    def _latents(self, n: int) -> torch.Tensor:
        return torch.from_numpy(self.rng.standard_normal((n, self.gcfg.z_dim))).float()

    def _generate(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ws = self.G.mapping(z)
        self._track_w_avg(ws)
        img, _ = self.G.synthesis(ws, noise_mode="const")
        return img, ws

    def _track_w_avg(self, ws: torch.Tensor) -> None:
        m = self.G.mapping
        if hasattr(m, "w_avg"):
            with torch.no_grad():
                m.w_avg.copy_(ws[:, 0].detach().mean(0).lerp(m.w_avg, self.tcfg.w_avg_beta))

    def recon_loss(self, fake: torch.Tensor, real: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        """Weighted L1 (parts count `part_weight` more, dilated 1 px) + L1 of 4x pooled images."""
        t = self.tcfg
        weight = 1.0 + t.part_weight * F.max_pool2d(parts, 3, stride=1, padding=1)
        loss = ((fake - real).abs() * weight).mean()
        if t.coarse_weight > 0:
            k = max(1, fake.shape[-1] // 32)
            loss = loss + t.coarse_weight * (F.avg_pool2d(fake, k) - F.avg_pool2d(real, k)).abs().mean()
        return loss

    def step(self) -> dict[str, float]:
        """One optimisation step; returns scalar stats."""
        t = self.tcfg
        t0 = time.time()
        z = self._latents(t.batch)
        real, parts = render_batch(z, self.gcfg.img_resolution)
        stats: dict[str, float] = {}

        if self.D is not None:
            self._d_step(real, t.batch)
            stats.update(self.last_stats)

        self.opt_G.zero_grad(set_to_none=True)
        fake, _ = self._generate(z)
        loss = torch.zeros(())
        if t.recon_weight > 0:
            lr_ = self.recon_loss(fake, real, parts)
            stats["recon"] = lr_.item()
            loss = loss + t.recon_weight * lr_
        if self.D is not None and t.adv_weight > 0:
            adv = F.softplus(-self.D(fake)).mean()
            stats["g_adv"] = adv.item()
            loss = loss + t.adv_weight * adv
        loss.backward()
        self.opt_G.step()
        self.nimg += t.batch
        self.step_idx += 1
        self._update_ema()
        self.train_seconds += time.time() - t0
        stats["loss"] = loss.item()
        stats["sec"] = time.time() - t0
        return stats

    def _d_step(self, real: torch.Tensor, n: int) -> None:
        t = self.tcfg
        assert self.D is not None and self.opt_D is not None
        self.opt_D.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake, _ = self._generate(self._latents(n))
        loss = F.softplus(self.D(fake)).mean() + F.softplus(-self.D(real)).mean()
        self.last_stats = {"d_loss": loss.item()}
        if self.step_idx % t.r1_interval == 0:
            r = real.detach().requires_grad_(True)
            logits = self.D(r)
            (grad,) = torch.autograd.grad(logits.sum(), r, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            loss = loss + r1 * (t.r1_gamma / 2) * t.r1_interval
            self.last_stats["r1"] = r1.item()
        loss.backward()
        self.opt_D.step()

    def _update_ema(self) -> None:
        t = self.tcfg
        ema_nimg = min(t.ema_nimg, self.nimg * 0.05)
        beta = 0.5 ** (t.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
                pe.copy_(p.detach().lerp(pe, beta))
            for be, b in zip(self.G_ema.buffers(), self.G.buffers()):
                be.copy_(b)

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (plain tensors and Python values: `weights_only` loadable)."""
        return {
            "generator_config": self.gcfg.to_dict(),
            "train_config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self.tcfg).items()},
            "G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "opt_G": self.opt_G.state_dict(),
            "D": None if self.D is None else self.D.state_dict(),
            "opt_D": None if self.opt_D is None else self.opt_D.state_dict(),
            "step": self.step_idx, "nimg": self.nimg, "train_seconds": self.train_seconds,
            "best_gate": self.best_gate, "rng": json.dumps(self.rng.bit_generator.state),
        }

    def save(self, path: Path) -> None:
        """Write a checkpoint atomically (temp file + rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Trainer":
        """Rebuild a trainer from `save`'s file."""
        sd = torch.load(path, map_location="cpu", weights_only=True)
        tc = dict(sd["train_config"])
        tc["betas"] = tuple(tc["betas"])
        tr = cls(GeneratorConfig.from_dict(sd["generator_config"]), TrainConfig(**tc))
        tr.G.load_state_dict(sd["G"])
        tr.G_ema.load_state_dict(sd["G_ema"])
        tr.opt_G.load_state_dict(sd["opt_G"])
        if tr.D is not None and sd["D"] is not None:
            tr.D.load_state_dict(sd["D"])
            tr.opt_D.load_state_dict(sd["opt_D"])
        tr.step_idx, tr.nimg = int(sd["step"]), int(sd["nimg"])
        tr.train_seconds = float(sd["train_seconds"])
        tr.best_gate = float(sd["best_gate"])
        tr.rng.bit_generator.state = json.loads(sd["rng"])
        return tr


# ----------------------------------------------------------------------------------------------
# Sampling, gate, export


@torch.no_grad()
def sample_images(G: Generator, seeds: Sequence[int], psi: float) -> list[np.ndarray]:
    """`H x W x 3` uint8 images of `G` for `seeds` (the app's seed -> z), truncation `psi`."""
    out = []
    for s in seeds:
        img = G(G.seed_to_z(s), truncation_psi=psi, noise_mode="const")
        out.append(to_uint8(img))
    return out


def gate(G: Generator, n: int = 200, psis: Sequence[float] = (0.7, 1.0), first_seed: int = 100_000) -> dict[str, Any]:
    """Share of `n` fresh samples (seeds `first_seed ...`) in which the detector finds a complete
    face (head, two eyes, mouth), per truncation psi; with counts of the missing parts."""
    res: dict[str, Any] = {"n": n, "first_seed": first_seed}
    for psi in psis:
        ok, reasons = 0, {}
        for img in sample_images(G, range(first_seed, first_seed + n), psi):
            det = detect(img)
            ok += det.complete
            for r in det.reasons:
                key = r.split(" (")[0]
                reasons[key] = reasons.get(key, 0) + 1
        res[f"psi_{psi:g}"] = {"complete_rate": ok / n, "complete": ok, "missing": reasons}
    return res


def save_samples(G: Generator, path: Path, seeds: Sequence[int] = tuple(range(8))) -> None:
    """A grid: psi 1.0 samples (top row), psi 0.7 (middle), and the target renders of the same
    latents (bottom row) - so a glance shows what the model should draw."""
    from PIL import Image

    top = sample_images(G, seeds, 1.0)
    mid = sample_images(G, seeds, 0.7)
    targets = [render(face_from_z(G.seed_to_z(s)[0].cpu().numpy()), G.img_resolution)[0] for s in seeds]
    Image.fromarray(tile(top + mid + targets, columns=len(seeds))).save(path)


def export(G_ema: Generator, out: Path, info: dict[str, Any]) -> Path:
    """Write `G_ema` in the native format (`model.safetensors` + `config.json`) plus `training.json`."""
    G = Generator(G_ema.config)
    G.load_state_dict(G_ema.state_dict())
    weights = save_native(G, out)
    (Path(out) / TRAINING_INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return weights


# ----------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(prog="python -m scripts.train_gan", description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", choices=("train", "eval", "samples"), default="train")
    p.add_argument("--minutes", type=float, default=90.0, help="training wall-clock budget for this call")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps in total (0 = no limit)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="export folder (native format)")
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--size", choices=("small", "medium", "tiny"), default="small", help="architecture preset")
    p.add_argument("--batch", type=int, default=None, help=f"default {TrainConfig.batch}; overrides on --resume")
    p.add_argument("--lr", type=float, default=None, help=f"default {TrainConfig.lr}; overrides on --resume")
    p.add_argument("--recon-weight", type=float, default=TrainConfig.recon_weight)
    p.add_argument("--adv-weight", type=float, default=TrainConfig.adv_weight)
    p.add_argument("--r1-gamma", type=float, default=TrainConfig.r1_gamma)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ckpt-minutes", type=float, default=4.0)
    p.add_argument("--sample-minutes", type=float, default=10.0)
    p.add_argument("--export-minutes", type=float, default=15.0, help="quick gate + export this often")
    p.add_argument("--gate-n", type=int, default=40, help="samples in the quick gate during training")
    p.add_argument("--eval-n", type=int, default=200, help="samples per psi in --stage eval")
    p.add_argument("--from-checkpoint", action="store_true", help="eval: use RUN_DIR's G_ema, not --out")
    return p


def _setup_logging(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in (logging.FileHandler(run_dir / "log.txt"), logging.StreamHandler(sys.stderr)):
        h.setFormatter(fmt)
        root.addHandler(h)


def _info(tr: Trainer, gate_res: Optional[dict[str, Any]]) -> dict[str, Any]:
    return {
        "method": "StyleGAN2 generator trained as a decoder of latent-determined toy faces "
                  "(weighted L1, see scripts/train_gan.py)"
                  + (f" + adversarial (weight {tr.tcfg.adv_weight})" if tr.tcfg.adv_weight > 0 else ""),
        "steps": tr.step_idx, "images_seen": tr.nimg, "train_seconds": round(tr.train_seconds, 1),
        "train_config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(tr.tcfg).items()},
        "drag_feature_res": tr.gcfg.drag_feature_res, "gate": gate_res,
        "command": "python -m scripts.train_gan " + " ".join(sys.argv[1:]),
    }


def train(args: argparse.Namespace) -> int:
    """The training stage; returns an exit code."""
    run_dir: Path = args.run_dir
    ckpt = run_dir / CHECKPOINT_NAME
    if args.resume and ckpt.is_file():
        tr = Trainer.load(ckpt)
        log.info("resumed from %s at step %d (%d images, %.0f s)", ckpt, tr.step_idx, tr.nimg, tr.train_seconds)
        if args.batch is not None:
            tr.tcfg.batch = args.batch
        if args.lr is not None:
            tr.tcfg.lr = args.lr
            tr.opt_G.param_groups[0]["lr"] = args.lr
            tr.opt_G.param_groups[1]["lr"] = args.lr * tr.tcfg.mapping_lr_scale
    else:
        if args.resume:
            log.info("no checkpoint at %s; starting fresh", ckpt)
        tcfg = TrainConfig(batch=args.batch or TrainConfig.batch, lr=args.lr or TrainConfig.lr,
                           recon_weight=args.recon_weight, adv_weight=args.adv_weight,
                           r1_gamma=args.r1_gamma, seed=args.seed)
        tr = Trainer(toy_generator_config(args.size), tcfg)
    n_g = sum(p.numel() for p in tr.G.parameters())
    log.info("G %.2f M params; config %s", n_g / 1e6, json.dumps(tr.gcfg.to_dict()))
    start = time.time()
    last = {"ckpt": start, "sample": start, "export": start}
    avg: dict[str, float] = {}
    done = False
    while not done:
        stats = tr.step()
        for k, v in stats.items():
            avg[k] = v if k not in avg else 0.9 * avg[k] + 0.1 * v
        now = time.time()
        done = (now - start) >= args.minutes * 60 or (args.max_steps and tr.step_idx >= args.max_steps)
        if tr.step_idx % 10 == 0 or tr.step_idx <= 3:
            log.info("step %d nimg %d %s", tr.step_idx, tr.nimg, " ".join(f"{k} {v:.4f}" for k, v in avg.items()))
        if done or now - last["ckpt"] >= args.ckpt_minutes * 60:
            tr.save(ckpt)
            last["ckpt"] = now
        if done or now - last["sample"] >= args.sample_minutes * 60:
            save_samples(tr.G_ema, run_dir / f"samples_{tr.step_idx:06d}.png")
            last["sample"] = now
        if not args.no_export and (done or now - last["export"] >= args.export_minutes * 60):
            g = gate(tr.G_ema, n=args.gate_n, psis=(0.7, 1.0))
            score = min(g["psi_0.7"]["complete_rate"], g["psi_1"]["complete_rate"])
            log.info("quick gate (n=%d): %s", args.gate_n, json.dumps(g))
            if score >= tr.best_gate:
                tr.best_gate = score
                export(tr.G_ema, args.out, _info(tr, g))
                log.info("exported to %s (score %.3f)", args.out, score)
                tr.save(ckpt)
            last["export"] = time.time()
    log.info("stopped at step %d after %.0f s of training in total", tr.step_idx, tr.train_seconds)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """The eval stage: print the gate as JSON."""
    if args.from_checkpoint:
        G = Trainer.load(args.run_dir / CHECKPOINT_NAME).G_ema
        source = str(args.run_dir / CHECKPOINT_NAME)
    else:
        G = load_native(args.out)
        source = str(args.out)
    t0 = time.time()
    res = gate(G, n=args.eval_n, psis=(0.7, 1.0))
    res["model"] = source
    res["gate_passed"] = res["psi_0.7"]["complete_rate"] >= 0.9
    res["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(res, indent=2))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of `python -m scripts.train_gan`."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.stage == "eval":
        logging.basicConfig(level=logging.WARNING)
        return evaluate(args)
    if args.stage == "samples":
        G = Trainer.load(args.run_dir / CHECKPOINT_NAME).G_ema if args.from_checkpoint else load_native(args.out)
        path = args.run_dir / "samples_eval.png"
        args.run_dir.mkdir(parents=True, exist_ok=True)
        save_samples(G, path)
        print(path)
        return 0
    _setup_logging(args.run_dir)
    return train(args)


if __name__ == "__main__":
    raise SystemExit(main())
