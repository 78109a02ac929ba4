"""`python -m stabledrag` — edit, generate and benchmark from the terminal.

Sub-commands:
  edit      --backend diffusion|gan   drag points on an image (diffusion) or a generated image (gan)
  generate  --backend gan             render a GAN sample by seed
  project   --backend gan             project a photo into a GAN (latent .npz for edit --latent)
  bench     tracking|speed|toy|fidelity|gpu    benchmarks that print JSON

Engine code is imported lazily so that `bench tracking` needs only torch.
A `UserError` is printed as one line (exit code 2), never as a stack trace.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Optional, Sequence

from . import engine as engines
from .config import METHODS
from .errors import UserError
from .overrides import parse_overrides  # noqa: F401 (re-exported: the CLI's --set parser)

#: Methods `bench toy` compares by default (the reference presets need the editors' point snapping).
TOY_METHODS = ("stabledrag", "baseline")

#: Reference methods and the only backend each exists for.
METHOD_BACKEND = {"draggan": "gan", "dragdiffusion": "diffusion"}


def _add_drag_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--drag", action="append", default=[], metavar="X,Y:X,Y",
                   help="handle and target in image pixels; repeat for several points")
    p.add_argument("--mask", default=None,
                   help="image whose white (luminance >= 0.5) or, with transparency, opaque pixels mark the "
                        "editable region")
    p.add_argument("--method", choices=list(METHODS), default="stabledrag",
                   help="stabledrag: discriminative tracker + confident supervision on our tuned settings; "
                        "baseline: nearest neighbour + plain supervision on the same tuned settings; "
                        "draggan (gan) / dragdiffusion (diffusion): the reference method exactly, with its "
                        "own defaults (points on whole feature pixels)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--out", required=True, help="output image path (.png)")
    p.add_argument("--report", default=None, help="write a JSON report (config, timings, trajectories)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any drag setting, e.g. --set tau=0.5 --set r_p=4")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _shard(text: str) -> tuple[int, int]:
    """`--shard K/N` -> (K, N); UserError unless 0 <= K < N."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--shard needs K/N (e.g. 0/2), got {text!r}") from None
    if not 0 <= k < n:
        raise UserError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all sub-commands."""
    parser = argparse.ArgumentParser(prog="python -m stabledrag", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug information")
    sub = parser.add_subparsers(dest="command", required=True)

    edit = sub.add_parser("edit", help="drag points on an image",
                          description="Options marked with an engine's name are refused for the other engines.")
    edit.add_argument("--backend", choices=engines.names(), default="diffusion",
                      help="; ".join(f"{e.name}: {e.help}" for e in engines.all_engines()))
    edit.add_argument("--model", default=None,
                      help="diffusion: hub id, diffusers folder or .safetensors/.ckpt file; "
                           "gan: .pkl or native checkpoint (default: the bundled toy model)")
    edit.add_argument("--image", default=None, help="input image (diffusion; gan: the projected photo for "
                                                    "--paste-back with --latent)")
    edit.add_argument("--max-steps", type=int, default=None, dest="max_steps", help="maximum drag steps")
    for alias in ("--steps", "--drag-steps"):  # the engines' former names, kept for old command lines
        edit.add_argument(alias, type=int, default=None, dest="max_steps", help=argparse.SUPPRESS)
    edit.add_argument("--paste-back", action="store_true",
                      help="diffusion: paste the input back outside the mask; gan with --latent: paste the "
                           "edit back into --image, the projected photo")
    seen: set[str] = set()
    for eng in engines.all_engines():
        for opt in eng.options:
            if opt.dest not in seen:
                seen.add(opt.dest)
                edit.add_argument(*opt.flags, **opt.kwargs)
    _add_drag_options(edit)

    gen = sub.add_parser("generate", help="render a generated image")
    gen.add_argument("--backend", choices=["gan"], default="gan")
    gen.add_argument("--model", default=None, help=".pkl or native checkpoint (default: the bundled toy model)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--truncation", type=float, default=None, help="truncation psi")
    gen.add_argument("--device", default=None)
    gen.add_argument("--out", required=True)

    from .gan.project_cli import add_project_parser

    add_project_parser(sub)

    bench = sub.add_parser("bench", help="benchmarks (JSON on stdout)")
    bsub = bench.add_subparsers(dest="bench", required=True)
    bt = bsub.add_parser("tracking", help="synthetic tracker benchmark")
    bt.add_argument("--cases", type=int, default=40, help="cases per scenario")
    bt.add_argument("--seed", type=int, default=0)
    bt.add_argument("--channels", type=int, default=64)
    bt.add_argument("--size", type=int, default=64)
    bt.add_argument("--out", default=None, help="also write the JSON here")
    bt.add_argument("--plot", default=None, help="PNG of success vs look-alike distance for both trackers")
    bt.add_argument("--no-gan", action="store_true", help="skip timing the trackers against a toy-GAN step")
    bt.add_argument("--gan-512", action="store_true",
                    help="also time them against a 512 px StyleGAN2 step (random weights; slow on a CPU)")
    bs = bsub.add_parser("speed", help="per-phase timings with random weights at full size")
    bs.add_argument("--backend", choices=["diffusion", "gan"], required=True)
    bs.add_argument("--size", type=int, default=None, help="image size (diffusion; default 256 on CPU, 512 on GPU)")
    bs.add_argument("--resolutions", default="512,1024", help="gan: comma-separated resolutions")
    bs.add_argument("--steps", type=int, default=3, help="timed repetitions per phase")
    bs.add_argument("--device", default=None)
    bs.add_argument("--out", default=None)
    bg = bsub.add_parser("gpu", help="the GPU check: SD 1.5 phases, whole/repeat edit, LoRA cost, StyleGAN2 "
                                     "512/1024 drag steps, peak memory (needs CUDA; --small: CPU dry run)")
    bg.add_argument("--small", action="store_true", help="tiny models on the CPU: checks the script, not a GPU")
    bg.add_argument("--device", default=None)
    bg.add_argument("--dtype", default=None, choices=["auto", "fp32", "fp16", "bf16"])
    bg.add_argument("--steps", type=int, default=3, help="timed repetitions per phase")
    bg.add_argument("--out", default=None)
    bf = bsub.add_parser("fidelity", help="a diffusion model on fresh toy faces: VAE and invert->denoise round "
                                          "trip (PSNR, colour, parts) and the time of a first edit and a second drag")
    bf.add_argument("--model", default=None, help="diffusers folder or hub id (default: the bundled toy SD)")
    bf.add_argument("--device", default=None)
    bf.add_argument("--vae-faces", type=int, default=200)
    bf.add_argument("--round-trip-faces", type=int, default=10)
    bf.add_argument("--timing-images", type=int, default=3)
    bf.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override an edit setting over the model's own, e.g. --set lora.steps=0")
    bf.add_argument("--out", default=None)
    by = bsub.add_parser("toy", help="ground-truth drag benchmark on the toy-faces world")
    by.add_argument("--backend", choices=engines.names(), required=True)
    by.add_argument("--cases", type=int, default=None)
    by.add_argument("--seed", type=int, default=10_000)
    by.add_argument("--device", default=None)
    by.add_argument("--sheet", default=None, help="PNG sheet of examples")
    by.add_argument("--model", default=None, help="model to bench (default: the bundled toy GAN / toy SD)")
    by.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a drag setting of every method, e.g. --set max_steps=400")
    by.add_argument("--methods", default=",".join(TOY_METHODS),
                    help="comma-separated drag methods to compare (default: %(default)s)")
    by.add_argument("--kinds", default=None, help="comma-separated case kinds (default: all)")
    by.add_argument("--out", default=None)
    by.add_argument("--source", choices=["generated", "rendered"], default="generated",
                    help="gan: generated samples (default) or rendered toy faces projected into the GAN first "
                         "(--cases = faces)")
    by.add_argument("--project-set", action="append", default=[], metavar="KEY=VALUE",
                    help="--source rendered: a projection setting, e.g. --project-set pti_steps=200")
    by.add_argument("--projection-only", action="store_true", help="--source rendered: no drags")
    by.add_argument("--jsonl", default=None,
                    help="--source rendered: append each face's scores here as it finishes; faces already there "
                         "(same settings) are read back, not run again (resume)")
    by.add_argument("--shard", default=None, metavar="K/N",
                    help="--source rendered: run only faces i %% N == K (processes sharing one --jsonl)")
    by.add_argument("--projection-cache", default=None, metavar="DIR",
                    help="--source rendered: keep each face's projection in DIR and reuse it (same model, "
                         "projection settings, seed and face), so other drag settings skip projecting")
    by.add_argument("--more-steps", type=int, default=0, metavar="N",
                    help="--source rendered: up to N presses of the GAN tab's 'More steps' after each projection "
                         "(default 0)")
    by.add_argument("--more-steps-when", choices=["miss", "always"], default="miss",
                    help="--source rendered: press only while a part is not within 1.5 px (miss, default) or always")
    return parser


def emit_json(data: Any, path: Optional[str]) -> None:
    """Print `data` as JSON and also write it to `path` if given."""
    text = json.dumps(data, indent=2)
    print(text)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(_dispatch(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> Optional[int]:
    if args.command == "bench":
        if args.bench == "tracking":
            from .bench.tracking import run_tracking_bench

            emit_json(run_tracking_bench(cases=args.cases, seed=args.seed, channels=args.channels, size=args.size,
                                         plot=args.plot, gan_ratio=not args.no_gan,
                                         gan_512=args.gan_512), args.out)
            return 0
        if args.bench == "speed":
            if args.backend == "gan":
                from .bench.speed_gan import gan_speed

                res = [int(r) for r in str(args.resolutions).split(",") if r.strip()]
                emit_json(gan_speed(resolutions=res, steps=args.steps, device=args.device), args.out)
            else:
                from .bench.speed_diffusion import diffusion_speed

                emit_json(diffusion_speed(size=args.size, steps=args.steps, device=args.device), args.out)
            return 0
        if args.bench == "gpu":
            from .bench.gpu import gpu_check

            emit_json(gpu_check(small=args.small, device=args.device, dtype=args.dtype, steps=args.steps), args.out)
            return 0
        if args.bench == "fidelity":
            from .bench.fidelity import fidelity_bench

            emit_json(fidelity_bench(model=args.model, device=args.device, vae_faces=args.vae_faces,
                                     round_trip_faces=args.round_trip_faces, timing_images=args.timing_images,
                                     overrides=parse_overrides(args.set)), args.out)
            return 0
        if args.bench == "toy" and args.source != "rendered":
            only = [flag for flag, given in (("--jsonl", args.jsonl), ("--shard", args.shard),
                                             ("--project-set", args.project_set),
                                             ("--projection-only", args.projection_only),
                                             ("--projection-cache", args.projection_cache),
                                             ("--more-steps", args.more_steps),
                                             ("--more-steps-when", args.more_steps_when != "miss")) if given]
            if only:
                raise UserError(f"{', '.join(only)}: only with --source rendered (projected faces).")
        if args.bench == "toy" and args.source == "rendered":
            if args.backend != "gan":
                raise UserError("--source rendered projects faces into a GAN: use it with --backend gan.")
            if args.more_steps_when != "miss" and not args.more_steps:
                raise UserError("--more-steps-when says when to press: use it with --more-steps N.")
            from .bench.toy_projected import projected_toy_bench

            extra: dict[str, Any] = {"methods": tuple(m for m in args.methods.split(",") if m)}
            if args.kinds:
                extra["kinds"] = tuple(k for k in args.kinds.split(",") if k)
            if args.shard:
                extra["shard"] = _shard(args.shard)
            emit_json(projected_toy_bench(faces=args.cases or 10, seed=args.seed, device=args.device, model=args.model,
                                          projection=parse_overrides(args.project_set),
                                          overrides=parse_overrides(args.set), drags=not args.projection_only,
                                          jsonl=args.jsonl, projection_cache=args.projection_cache,
                                          more_steps=args.more_steps, more_steps_when=args.more_steps_when,
                                          **extra),
                      args.out)
            return 0
        if args.bench == "toy":
            from .bench.toy import toy_bench

            kinds = tuple(k for k in args.kinds.split(",") if k) if args.kinds else None
            methods = tuple(m for m in args.methods.split(",") if m)
            try:
                result = toy_bench(backend=args.backend, cases=args.cases, seed=args.seed, device=args.device,
                                   sheet=args.sheet, model=args.model, overrides=parse_overrides(args.set),
                                   methods=methods, kinds=kinds)
            except ValueError as e:
                raise UserError(str(e)) from e
            emit_json(result, args.out)
            return 0
    if args.command == "project":
        from .gan.project_cli import project_command

        return project_command(args)
    if args.command == "generate":
        from .gan.cli import generate_command

        return generate_command(args)
    if args.command == "edit":
        need = METHOD_BACKEND.get(args.method)
        if need is not None and need != args.backend:
            raise UserError(f"--method {args.method} is for --backend {need}; with --backend {args.backend} use "
                            f"{'draggan' if args.backend == 'gan' else 'dragdiffusion'}, baseline or stabledrag.")
        return edit_command(args)
    raise UserError(f"unknown command {args.command!r}")


def edit_command(args: argparse.Namespace) -> int:
    """`edit --backend NAME`, the same for every registered engine: refuse the other engines' options,
    check the output folder, run `engine.edit` with a terminal progress bar, write the image and,
    with `--report`, the JSON report (one layout: `backend`, `output`, `status`, `steps`,
    `final_distances`, `error`, then the engine's own fields). Exit code 0 whenever the drag ran,
    whether or not the handles reached their targets (the status says which); UserError (exit 2)
    for anything the user can fix."""
    import os
    from pathlib import Path

    from PIL import Image

    from .progress import TerminalProgress

    engine = engines.get(args.backend)
    engines.refuse_foreign_options(args, engine, engines.all_engines())
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise UserError(f"The output folder {out_dir!r} does not exist.")
    bar = TerminalProgress(disable=bool(args.quiet))
    try:
        outcome = engine.edit(args, bar)
    finally:
        bar.close()
    try:
        Image.fromarray(outcome.image).save(args.out)
    except (OSError, ValueError) as e:
        raise UserError(f"Could not write {args.out!r}: {e}") from None
    report = {"backend": engine.name, "output": str(args.out), "status": outcome.status, "steps": outcome.steps,
              "final_distances": outcome.final_distances, "error": outcome.error, **outcome.report}
    if args.report:
        try:
            Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
        except OSError as e:
            raise UserError(f"Could not write the report {args.report!r}: {e}") from None
    if not args.quiet:
        dist = ", ".join(f"{d:.1f}" for d in outcome.final_distances)
        print(f"wrote {args.out}: {outcome.status} after {outcome.steps} steps; "
              f"handle-target distances (px): {dist}")
    if outcome.error:
        print(outcome.error, file=sys.stderr)
    return 0
