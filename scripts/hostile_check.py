"""`python -m scripts.hostile_check [--url URL --pid PID]`: send hostile input to a running app.

A bounded check of issue 13: decompression bombs (1 MB session zips whose entry inflates to 1 GiB,
13000x13000 PNGs in a session, in an upload and in a region-editor layer), near-limit uploads
sent at once, non-raster files (EPS), corrupt zips (bad CRC, encrypted, deep JSON, NaN points,
an .npy claiming a huge shape), absurd settings (r_p = 1e6, NaN, 2**63 seeds, an 8 MB prompt,
1000 point pairs) and a queue flood from one client. It asserts that

- every answer is a clear message (no "Something went wrong inside the app", no empty answer),
- the server's peak resident memory grows by less than `--max-growth-mb` (default 1024),
- a normal request (Generate) works afterwards,

and prints a JSON summary (RSS before / after / peak, answers). Without `--url` it starts
`python app.py` itself on a free port with the bundled models (and its own Gradio cache folder),
which also lets `--drag-cycles N` count the temporary files left after N drag cycles.
Exit code 0 when every check passed, 1 otherwise. The hostile files themselves are made by
`stabledrag.testing` (shared with the tests); this program sends them. (It was
`python -m stabledrag.webapp.abuse`.)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

from stabledrag.paths import REPO_ROOT
from stabledrag.testing import big_png, corrupt_sessions, inflation_bomb_zip, png_header_bomb

BUG_TEXT = "Something went wrong inside the app"
#: Gradio's answer to an exception that is not a gr.Error (no message reaches the person).
GENERIC_TEXT = "has not enabled verbose error reporting"


# -- server and memory -----------------------------------------------------------------------------


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of `pid` in MB, from /proc (Linux)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0]) / 1024.0
    return {"rss": out.get("VmRSS", 0.0), "peak": out.get("VmHWM", 0.0)}


def reset_peak(pid: int) -> bool:
    """Reset the kernel's peak-RSS counter of `pid` (Linux >= 4.0, own processes); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(extra: list[str]) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free port (its temp files, Gradio's cache included, under
    `<tmp>/stabledrag-studio/<pid>`); returns (process, url)."""
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("GRADIO_TEMP_DIR", None)
    app = REPO_ROOT / "app.py"
    proc = subprocess.Popen([sys.executable, str(app), "--port", str(port), "--device", "cpu", *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    import urllib.request

    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"the app exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("the app did not start within 5 minutes")


def count_files(folder: str | Path) -> tuple[int, int]:
    """(number of files, total bytes) under `folder`."""
    n = size = 0
    for root, _, files in os.walk(folder):
        for f in files:
            try:
                size += os.path.getsize(os.path.join(root, f))
                n += 1
            except OSError:
                pass
    return n, size


# -- the run ---------------------------------------------------------------------------------------


class Abuse:
    """Sends the hostile requests with gradio_client and records every answer."""

    def __init__(self, url: str, workdir: Path) -> None:
        import gradio_client

        self.gc = gradio_client
        self.url = url
        self.workdir = workdir
        self.answers: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def client(self) -> Any:
        return self.gc.Client(self.url, verbose=False, download_files=False)

    def file(self, name: str, blob: bytes) -> Any:
        path = self.workdir / name
        path.write_bytes(blob)
        return self.gc.handle_file(str(path))

    def call(self, what: str, client: Any, api_name: str, *args: Any, **kwargs: Any) -> str:
        """Call `api_name`; record the status text (or the refusal's message)."""
        t0 = time.time()
        try:
            out = client.predict(*args, api_name=api_name, **kwargs)
            text = _status_of(out)
            ok = bool(text) and BUG_TEXT not in text
        except Exception as e:  # a refusal by the server (queue, validation) is also an answer
            text = f"{type(e).__name__}: {e}"
            ok = BUG_TEXT not in text and GENERIC_TEXT not in text and "Traceback" not in text
        with self._lock:
            self.answers.append({"input": what, "endpoint": api_name, "answer": text[:300], "clear": ok,
                                 "seconds": round(time.time() - t0, 2)})
        return text

    def run(self) -> None:
        c = self.client()
        # a GAN image to work on (also proves the server answers)
        self.call("normal generate (before)", c, "/gan_generate", seed=1, psi=0.7)

        # 1. session zips whose entry inflates to 1 GiB (declared size lying), 4 at once
        bomb = self.file("bomb-session.zip", inflation_bomb_zip(1024))
        self._parallel([(f"1 GiB inflation zip #{i}", "/diff_import", (bomb,)) for i in range(4)])
        # 2. pixel bombs: in a session, as an upload, as a region-editor layer; 4 near-limit uploads
        for what, (engine, blob) in corrupt_sessions().items():
            self.call(f"session: {what}", c, "/gan_import" if engine == "gan" else "/diff_import",
                      self.file("s.zip", blob))
        self.call("upload: 13000x13000 PNG header", c, "/diff_load_image", self.file("bomb.png", png_header_bomb()))
        near = self.file("near.png", big_png(6200))  # 38 MP, under the 40 MP limit
        self._parallel([(f"upload: 6200x6200 PNG #{i}", "/diff_load_image", (near,)) for i in range(4)])
        self.call("upload: EPS", c, "/diff_load_image",
                  self.file("x.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\nshowpage\n"))
        self.call("upload: 8x8 PNG", c, "/diff_load_image", self.file("tiny.png", big_png(8)))
        layer = self.file("layer.png", png_header_bomb())
        self.call("region-editor layer bomb", c, "/gan_region",
                  {"background": None, "layers": [layer], "composite": None, "id": None})
        # 3. settings and points
        self.call("1000 point pairs", c, "/gan_points", " ".join(f"{i % 30},1:{i % 30},9" for i in range(1000)))
        self.call("points ok", c, "/gan_points", "10,12:16,12")
        # NaN / Infinity as text into Number inputs (gradio_client refuses to encode a float NaN; a
        # Slider's own preprocessing fails on text before the app sees it, so sliders get +-1e308)
        for name, value in (("r_p", 1e6), ("r_p", 400), ("r_m", 1e6), ("r_p", "NaN"), ("r_m", "-Infinity"),
                            ("lambda_mask", "NaN"), ("r_m", "abc"), ("lr", 1e20), ("max_steps", 1e308)):
            kwargs = {"region": None, "max_steps": 2, name: value}
            self.call(f"GAN {name} = {value}", c, "/gan_start", **kwargs)
        self.call("GAN seed 2**63", c, "/gan_generate", seed=2**63, psi=0.7)
        self.call("GAN seed -1", c, "/gan_generate", seed=-1, psi=0.7)
        d = self.client()
        self.call("Diff load", d, "/diff_load_image", self.file("ok.png", big_png(64)))
        self.call("Diff points", d, "/diff_points", "10,10:20,10")
        self.call("Diff seed 2**63", d, "/diff_run", region=None, prompt="", seed=2**63)
        self.call("Diff 8 MB prompt", d, "/diff_run", region=None, prompt="x" * 8_000_000)
        self.call("Diff stop distance inf", d, "/diff_run", region=None, prompt="", stop_distance="Infinity")
        # 4. one client floods the GPU queue; another's cheap action still works
        flood = self.client()
        self.call("flood: generate", flood, "/gan_generate", seed=2, psi=0.7)
        self.call("flood: points", flood, "/gan_points", "10,12:16,12")
        jobs = [flood.submit(region=None, max_steps=30, api_name="/gan_start") for _ in range(10)]
        time.sleep(1.0)
        self.call("other client's cheap action during the flood", c, "/gan_clear")
        refused = 0
        for j in jobs:
            try:
                j.result(timeout=600)
            except Exception:
                refused += 1
        with self._lock:
            self.answers.append({"input": "flood: 10 Starts from one client", "endpoint": "/gan_start",
                                 "answer": f"{10 - refused} ran, {refused} refused", "clear": refused >= 7})
        self.call("normal generate (after)", c, "/gan_generate", seed=1, psi=0.7)

    def _parallel(self, calls: list[tuple[str, str, tuple]]) -> None:
        threads = [threading.Thread(target=self.call, args=(what, self.client(), api, *args))
                   for what, api, args in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def drag_cycles(self, n: int) -> None:
        c = self.client()
        for i in range(n):
            self.call(f"drag cycle {i}: generate", c, "/gan_generate", seed=i, psi=0.7)
            self.call(f"drag cycle {i}: points", c, "/gan_points", "40,60:50,60")
            self.call(f"drag cycle {i}: start", c, "/gan_start", region=None, max_steps=6, preview_every=2)


def _status_of(out: Any) -> str:
    """The status text among a handler's outputs (the first string that reads like a sentence)."""
    values = out if isinstance(out, (list, tuple)) else [out]
    texts = [v for v in values if isinstance(v, str) and len(v) > 12 and " " in v and not v.startswith("<")]
    return texts[0] if texts else ""


def main(argv: Optional[list[str]] = None) -> int:
    """Run the hostile-input check; print the JSON summary; exit 0 when every check passed."""
    p = argparse.ArgumentParser(prog="python -m scripts.hostile_check", description=__doc__.split("\n")[0])
    p.add_argument("--url", default=None, help="a running app (else one is started with the bundled models)")
    p.add_argument("--pid", type=int, default=None, help="its process id, to measure its memory (Linux)")
    p.add_argument("--max-growth-mb", type=float, default=1024.0)
    p.add_argument("--drag-cycles", type=int, default=0, help="also run N GAN drag cycles and count temp files")
    p.add_argument("--cache-ttl", type=int, default=1800, help="--cache-ttl of a server started here")
    p.add_argument("--wait-after", type=float, default=0.0,
                   help="seconds to wait after the drag cycles before counting temp files again")
    p.add_argument("--out", default=None, help="also write the JSON summary here")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="stabledrag-abuse-"))
    proc = None
    if args.url is None:
        proc, url = start_server(["--cache-ttl", str(args.cache_ttl)])
        pid: Optional[int] = proc.pid
    else:
        url, pid = args.url, args.pid
    summary: dict[str, Any] = {"url": url}
    try:
        ab = Abuse(url, work)
        ab.call("warm-up generate", ab.client(), "/gan_generate", seed=0, psi=0.7)
        if pid:
            summary["rss_before_mb"] = rss_mb(pid)
            summary["peak_reset"] = reset_peak(pid)
        t0 = time.time()
        ab.run()
        summary["seconds"] = round(time.time() - t0, 1)
        if pid:
            after = rss_mb(pid)
            summary["rss_after_mb"] = after
            base = summary["rss_before_mb"]["rss"] if summary["peak_reset"] else summary["rss_before_mb"]["peak"]
            summary["peak_growth_mb"] = round(after["peak"] - base, 1)
        if args.drag_cycles:
            from stabledrag.webapp.views import _outputs_root

            folder = _outputs_root() / str(pid) if pid else None  # the app's temp files, Gradio's cache included
            counts: dict[str, Any] = {"cycles": args.drag_cycles, "before": count_files(folder) if folder else None}
            ab.drag_cycles(args.drag_cycles)
            counts["after"] = count_files(folder) if folder else None
            if args.wait_after:
                time.sleep(args.wait_after)
                counts[f"after_{args.wait_after:g}s_more"] = count_files(folder) if folder else None
            summary["temp_files"] = counts
        summary["answers"] = ab.answers
        unclear = [a for a in ab.answers if not a["clear"]]
        last = [a for a in ab.answers if a["input"] == "normal generate (after)"]
        checks = {
            "every answer clear": not unclear,
            "normal request works after": bool(last) and last[0]["answer"].startswith("Generated seed 1"),
        }
        if pid:
            checks["peak RSS growth < max"] = summary["peak_growth_mb"] < args.max_growth_mb
        summary["checks"] = checks
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if all(summary["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
