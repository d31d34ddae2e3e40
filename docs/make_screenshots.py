"""Regenerate the pictures of the README and docs/ from a short real MiniLM run.

    HF_HUB_OFFLINE=1 nice -n 19 .venv/bin/python docs/make_screenshots.py

Steps (each skipped when its output is already in --work, so a killed run continues):
export Rotten Tomatoes, fine-tune MiniLM for --max-steps steps at --max-length 64, evaluate on
the test split (eval/report.html), explain one review (explain.html), probe the run for bias
(bias.html), build a memory from --memory-rows training rows tuned on --tune-rows validation
rows, serve the run with it and drive the page with Playwright and Debian's chromium
(/usr/bin/chromium); then screenshot each page and write docs/report.png, docs/explain.png,
docs/bias.png and docs/serve.png, scaled to --width pixels and reduced to a 256-colour palette
so each stays under 200 KB. The curve figure (docs/rt-curve.png) is the one
`bench/bench_practice.py curve` draws from a real learning curve (27 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from PIL import Image, ImageChops

from jiyi.cli import main as jiyi

DOCS = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
EXPLAIN_TEXT = "A gorgeous, witty, seductive movie, though the ending drags a little."
SERVE_TEXT = "a moving, funny film with lovely music but a dull ending"
LIMIT_BYTES = 200_000


def run(argv: list[str]) -> None:
    """One jiyi command in this process, printed first; stop on failure."""
    print(f"\n$ jiyi {shlex.join(argv)}", flush=True)
    if jiyi(argv) != 0:
        sys.exit(f"failed: jiyi {shlex.join(argv)}")


def first_rows(source: Path, target: Path, n: int) -> None:
    """The header and the first `n` rows of a CSV (the data is already shuffled by the export)."""
    with source.open(encoding="utf-8", newline="") as f, target.open("w", encoding="utf-8") as g:
        reader, writer = csv.reader(f), csv.writer(g)
        for i, row in enumerate(reader):
            if i > n:
                break
            writer.writerow(row)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_png(shot: Path, name: str, width: int) -> None:
    """Cut the blank strip below the content, scale `shot` to `width`, reduce it to a 256-colour palette and save docs/`name`."""
    image = Image.open(shot).convert("RGB")
    bottom = ImageChops.invert(image).getbbox()  # the last non-white row: no blank strip below
    if bottom:
        image = image.crop((0, 0, image.width, min(image.height, bottom[3] + 16)))
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = DOCS / name
    image.save(out, optimize=True)
    size = out.stat().st_size
    print(f"{out}: {image.width}×{image.height}, {size / 1000:.0f} KB", flush=True)
    if size > LIMIT_BYTES:
        sys.exit(f"{out} is {size} bytes, over {LIMIT_BYTES}: lower --width or the page height")


def shoot_file(browser, html: Path, shot: Path, height: int) -> None:
    """A screenshot of the top `height` pixels of an offline HTML page at 1280 wide."""
    page = browser.new_page(viewport={"width": 1280, "height": height})
    page.goto(html.resolve().as_uri())
    page.wait_for_load_state("load")
    time.sleep(0.5)
    page.screenshot(path=str(shot))
    page.close()


def shoot_serve(browser, url: str, shot: Path) -> None:
    """The serve page after one kNN-augmented prediction with its explanation and neighbours."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(600_000)
    page.goto(f"{url}/")
    expect(page.locator("#info")).to_contain_text("rows")
    page.get_by_label("Text to classify").fill(SERVE_TEXT)
    page.get_by_role("button", name="Predict").click()
    expect(page.locator("#neighbours-body tr").first).to_be_visible()
    expect(page.locator("#words .w").first).to_be_visible()
    expect(page.locator("#attention-grid canvas").first).to_be_visible()
    expect(page.locator("#predict-status")).to_be_empty()
    time.sleep(1)
    page.screenshot(path=str(shot), full_page=True)
    page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="runs/screenshots", help="folder for the run and pages")
    parser.add_argument("--max-steps", default="150", help="fine-tuning steps (default 150)")
    parser.add_argument("--memory-rows", type=int, default=1000, help="training rows remembered")
    parser.add_argument(
        "--tune-rows", type=int, default=400, help="validation rows the memory is tuned on"
    )
    parser.add_argument("--width", type=int, default=1000, help="width of the saved PNGs")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        sys.exit(f"needs chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    work = Path(args.work)
    data, run_dir, mem = work / "data", work / "run", work / "memory"
    # 1. data, a short fine-tune (it evaluates the test split: eval/report.html)
    if not (data / "test.csv").is_file():
        run(["data", "export", "rotten-tomatoes", "--output", str(data)])
    if not (run_dir / "eval" / "report.html").is_file():
        run(
            [
                *("train", "--model", "minilm", "--train", str(data / "train.csv")),
                *("--validation", str(data / "validation.csv"), "--test", str(data / "test.csv")),
                *("--output", str(run_dir), "--max-steps", args.max_steps, "--max-length", "64"),
                *("--batch-size", "32", "--seed", "42"),
            ]
        )
    # 2. explain one text, probe for bias
    if not (work / "explain" / "explain.html").is_file():
        run(["explain", str(run_dir), "--text", EXPLAIN_TEXT, "--output", str(work / "explain")])
    if not (work / "bias" / "bias.html").is_file():
        run(
            ["bias", str(run_dir), "--data", str(data / "test.csv"), "--output", str(work / "bias")]
        )
    # 3. a memory of some training rows, tuned on the validation split
    if not (mem / "memory.json").is_file():
        subset = work / f"train-{args.memory_rows}.csv"
        first_rows(data / "train.csv", subset, args.memory_rows)
        tune = work / f"validation-{args.tune_rows}.csv"
        first_rows(data / "validation.csv", tune, args.tune_rows)
        run(
            [
                *("memory", "build", str(run_dir), "--data", str(subset)),
                *("--validation", str(tune), "--output", str(mem)),
                "--overwrite",
            ]
        )
    # 4. screenshots
    shots = work / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jiyi",
            "serve",
            str(run_dir),
            "--memory",
            str(mem),
            "--port",
            str(port),
        ]
    )
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                sys.exit("jiyi serve exited")
            time.sleep(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            shoot_file(browser, run_dir / "eval" / "report.html", shots / "report.png", 1100)
            shoot_file(browser, work / "explain" / "explain.html", shots / "explain.png", 1000)
            shoot_file(browser, work / "bias" / "bias.html", shots / "bias.png", 1000)
            shoot_serve(browser, url, shots / "serve.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    for name in ("report", "explain", "bias", "serve"):
        save_png(shots / f"{name}.png", f"{name}.png", args.width)


if __name__ == "__main__":
    main()
