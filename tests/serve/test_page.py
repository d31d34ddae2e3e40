"""The `jiyi serve` web page, end to end (under its Content-Security-Policy): live servers from conftest.py (real uvicorn on a free
loopback port, around the tiny trained run), Playwright driving Debian's chromium headless at a
laptop's 1280 × 800.

Skipped when playwright or /usr/bin/chromium is missing. Each test saves a screenshot in its
tmp_path (the README's docs/serve.png comes from a real MiniLM run: docs/make_screenshots.py).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import CHROMIUM

from conftest import build_faq_memory, build_tiny_bert, train_argv, write_csv
from jiyi.cli import main as run_cli
from jiyi.serve.classification import ClassificationService
from jiyi.serve.settings import Settings

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
expect = sync_api.expect

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs chromium at /usr/bin/chromium")

VIEWPORT = {"width": 1280, "height": 800}
LAYERS, HEADS = 2, 4  # the tiny BERT of tests/conftest.py
TIMEOUT_MS = 60_000  # explain runs integrated gradients on the CPU
TOKEN = "page-test-token"
LABEL = re.compile(r"^(neg|pos)$")
ZH_TEXT = "这本书写得非常好，我很喜欢"
ZH_POSITIVE = ["好", "喜欢", "精彩", "感人", "不错", "满意"]
ZH_NEGATIVE = ["差", "无聊", "失望", "糟糕", "难看", "后悔"]
ZH_FILLER = ["这本书", "这部电影", "写得", "拍得", "非常", "我", "很", "故事", "音乐", "真的"]


@contextmanager
def open_page(browser: Any, url: str) -> Iterator[Any]:
    """A fresh page on `url`/; fails the test on a script error, an alert() or a request that
    leaves the server (the page must work offline)."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on(  # the page works under its own Content-Security-Policy: nothing refused
        "console",
        lambda m: (
            problems.append(f"CSP: {m.text}") if "Content Security Policy" in m.text else None
        ),
    )
    page.on(
        "request",
        lambda r: None if r.url.startswith((url, "data:")) else problems.append(f"off: {r.url}"),
    )
    try:
        page.goto(f"{url}/")
        yield page
        assert problems == []
    finally:
        context.close()


def screenshot(page: Any, path: Path) -> None:
    """Save the page as `path` (a blank or broken page is smaller than 10 kB)."""
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000


def test_page_predicts_and_shows_attributions_and_attention(
    server: Any, tmp_path: Path, browser: Any
) -> None:
    text = "a really moving and funny film, with lovely music but a dull ending"
    with open_page(browser, server.url) as page:
        expect(page.locator("#info")).to_contain_text("torch")
        expect(page.locator("#info")).to_contain_text("neg, pos")

        page.get_by_label("Text to classify").fill(text)
        page.get_by_role("button", name="Predict").click()
        expected = httpx.post(f"{server.url}/v1/predict", json={"texts": [text]}, timeout=30)
        expected = expected.json()["predictions"][0]
        expect(page.locator("#label")).to_have_text(expected["label"])
        probabilities = expected["probabilities"]
        expect(page.locator("#probabilities .name")).to_have_text(
            sorted(probabilities, key=probabilities.get, reverse=True)
        )

        # the words, in the text's own spelling, shaded by their attribution
        words = page.locator("#words .w")
        expect(words.first).to_be_visible()
        expect(page.locator("#words")).to_have_text(text)
        assert "moving" in words.all_inner_texts()
        shades = words.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
        assert any(re.fullmatch(r"rgba\(\d+, \d+, \d+, 0?\.0*[1-9]\d*\)", s) for s in shades)
        assert re.fullmatch(
            r"moving: [+-]\d\.\d{4}",
            page.locator("#words .w[title^=moving]").first.get_attribute("title"),
        )

        # one heatmap per layer and head; a click enlarges one, with its tokens
        expect(page.locator("#attention-grid canvas")).to_have_count(LAYERS * HEADS)
        page.get_by_role("button", name="layer 2, head 3: enlarge").click()
        dialog = page.locator("#map-dialog")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("layer 2, head 3")
        assert page.locator("#map-canvas").evaluate("c => c.width") > 100
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(page.locator("#predict-status")).to_be_empty()

        screenshot(page, tmp_path / "serve.png")


def take(page: Any, held: dict[str, Any], key: str) -> Any:
    """The request held under `key` by a route handler, once the page has sent it."""
    for _ in range(500):
        if key in held:
            return held.pop(key)
        page.wait_for_timeout(20)  # lets playwright run the route handlers
    raise AssertionError(f"the page sent no {key} request")


def test_page_marks_and_clears_stale_panels_and_shows_errors_alone(
    server: Any, tmp_path: Path, browser: Any
) -> None:
    first, second = "a really moving and funny film", "two dull hours and a poor ending"
    timeout = {"error": {"code": "timeout", "message": "the explanation took too long"}}
    with open_page(browser, server.url) as page:
        text_box = page.get_by_label("Text to classify")
        text_box.fill(first)
        page.get_by_role("button", name="Predict").click()
        expect(page.locator("#words")).to_have_text(first)
        expect(page.locator("#attention-grid canvas")).to_have_count(LAYERS * HEADS)

        # a second text, its answers held back: the first text's panels are marked stale
        held: dict[str, Any] = {}
        page.route("**/v1/predict", lambda route: held.__setitem__("predict", route))
        page.route("**/v1/explain", lambda route: held.__setitem__("explain", route))
        text_box.fill(second)
        page.get_by_role("button", name="Predict").click()
        for panel in ("#prediction", "#explanation", "#attention"):
            expect(page.locator(panel)).to_have_class(re.compile(r"\bstale\b"))
            expect(page.locator(panel)).to_have_attribute("aria-busy", "true")
        # the prediction comes: the first text's attributions and maps are gone, not beside it
        take(page, held, "predict").fallback()
        expected = httpx.post(f"{server.url}/v1/predict", json={"texts": [second]}, timeout=30)
        expect(page.locator("#label")).to_have_text(expected.json()["predictions"][0]["label"])
        expect(page.locator("#prediction")).not_to_have_class(re.compile(r"\bstale\b"))
        expect(page.locator("#predict-status")).to_have_text("explaining…")
        expect(page.locator("#explain-status")).to_have_text("Explaining…")
        expect(page.locator("#words .w")).to_have_count(0)
        expect(page.locator("#attention-grid canvas")).to_have_count(0)
        # its explanation times out: the error, and no earlier words under it
        take(page, held, "explain").fulfill(status=504, json=timeout)
        expect(page.locator("#explain-error")).to_contain_text("504 timeout")
        expect(page.locator("#words .w")).to_have_count(0)
        expect(page.locator("#attention-note")).to_have_text(
            "No attention maps: the explanation failed."
        )
        page.unroute("**/v1/explain")

        # a prediction that fails: its error alone, no earlier results under it
        page.unroute("**/v1/predict")
        page.route("**/v1/predict", lambda route: route.fulfill(status=504, json=timeout))
        text_box.fill("a third text")
        page.get_by_role("button", name="Predict").click()
        expect(page.locator("#predict-error")).to_contain_text("504 timeout")
        for panel in ("#prediction", "#explanation"):
            expect(page.locator(panel)).to_be_hidden()
        expect(page.locator("#attention-grid canvas")).to_have_count(0)
        expect(page.locator(".stale")).to_have_count(0)
        page.unroute("**/v1/predict")

        # the next text is answered afresh, with no error left over
        text_box.fill(first)
        page.get_by_role("button", name="Predict").click()
        expect(page.locator("#words")).to_have_text(first)
        expect(page.locator("#attention-grid canvas")).to_have_count(LAYERS * HEADS)
        for error in ("#predict-error", "#explain-error"):
            expect(page.locator(error)).to_be_empty()
        expect(page.locator(".stale")).to_have_count(0)
        screenshot(page, tmp_path / "serve-fresh.png")


def test_page_with_a_token_shows_errors_inline_and_the_nearest_examples(
    start_server: Any, classifier: Any, memory_copy: Any, tmp_path: Path, browser: Any
) -> None:
    from jiyi.memory.knn import Memory

    settings = Settings(token=TOKEN, max_chars=80)
    live = start_server(settings, ClassificationService(classifier, Memory.open(memory_copy())))
    with open_page(browser, live.url) as page:
        # 401: the page asks for the token, then keeps it for the session
        expect(page.locator("#token-form")).to_be_visible()
        expect(page.locator("#app")).to_be_hidden()
        page.get_by_label("This server needs an access token").fill(TOKEN)
        page.get_by_role("button", name="Use token").click()
        expect(page.locator("#info")).to_contain_text("120 rows")
        assert page.evaluate("sessionStorage.getItem('jiyi-serve-token')") == TOKEN

        # errors stay on the page: an empty text, then one over --max-chars (422)
        page.get_by_role("button", name="Predict").click()
        expect(page.locator("#predict-error")).to_have_text("Type a text first.")
        text_box = page.get_by_label("Text to classify")
        text_box.fill("a good film " * 10)
        page.get_by_role("button", name="Predict").click()
        expect(page.locator("#predict-error")).to_contain_text("422")

        # Ctrl+Enter predicts (kNN-augmented); the nearest examples: score, label and text
        text_box.fill("a good and lovely film with great music and a moving ending")
        text_box.press("Control+Enter")
        expect(page.locator("#label")).to_have_text(LABEL)
        expect(page.locator("#predict-error")).to_be_empty()
        expect(page.locator("#score")).to_contain_text("5 remembered neighbours")
        rows = page.locator("#neighbours-body tr")
        expect(rows).to_have_count(5)
        expect(rows.first.locator("td")).to_have_count(3)
        expect(rows.first.locator("td").nth(1)).to_have_text(LABEL)
        expect(page.locator("#words .w").first).to_be_visible()
        expect(page.locator("#predict-status")).to_be_empty()
        screenshot(page, tmp_path / "serve-memory.png")


def test_page_asks_a_faq_memory(
    start_server: Any, classifier: Any, tiny_model_dir: Path, tmp_path: Path, browser: Any
) -> None:
    from jiyi.memory.knn import Memory

    mem = build_faq_memory(tiny_model_dir, tmp_path)
    live = start_server(Settings(), ClassificationService(classifier, Memory.open(mem)))
    with open_page(browser, live.url) as page:
        expect(page.locator("#ask")).to_be_visible()
        expect(page.locator("#info")).to_contain_text("3 rows, FAQ")
        question = page.get_by_label("Question", exact=True)

        question.fill("good great film")
        page.get_by_role("button", name="Ask").click()
        expect(page.locator("#answer .answer")).to_have_text("Answer A")
        expect(page.locator("#answer")).to_contain_text("matched “good great film”")

        question.fill("unrelated words")
        question.press("Enter")
        expect(page.locator("#answer .answer")).to_have_text("No confident answer.")
        expect(page.locator("#ask-error")).to_be_empty()

        # no labels in this memory: predictions are the model's own, no nearest examples
        page.get_by_label("Text to classify").fill("a good film")
        page.get_by_role("button", name="Predict").click()
        expect(page.locator("#label")).to_have_text(LABEL)
        expect(page.locator("#neighbours")).to_be_hidden()
        expect(page.locator("#predict-status")).to_be_empty()
        screenshot(page, tmp_path / "serve-faq.png")


def chinese_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (text, label) rows of Chinese without spaces: filler plus a sentiment word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(ZH_FILLER, rng.randint(2, 5))
        words.insert(
            rng.randrange(len(words) + 1),
            rng.choice(ZH_POSITIVE if label == "pos" else ZH_NEGATIVE),
        )
        rows.append(
            (
                "".join(words)
                + rng.choice(["。", "，我很喜欢", "！"] if label == "pos" else ["。", "！"]),
                label,
            )
        )
    return rows


@pytest.fixture(scope="module")
def zh_server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny run on Chinese sentiment rows whose tokenizer knows every character of them (one
    token per character, as Chinese BERT), served."""
    from jiyi.predict import load

    root = tmp_path_factory.mktemp("zh")
    train, validation = chinese_rows(160, seed=1), chinese_rows(40, seed=2)
    model = build_tiny_bert(root / "tiny-zh", [t for t, _ in train] + [ZH_TEXT])
    write_csv(root / "data" / "train.csv", train)
    write_csv(root / "data" / "validation.csv", validation)
    write_csv(root / "data" / "test.csv", chinese_rows(40, seed=3))
    assert run_cli(train_argv(model, root / "data", root / "run")) == 0
    return start_server(Settings(), ClassificationService(load(root / "run")))


def test_page_with_chinese_input(zh_server: Any, tmp_path: Path, browser: Any) -> None:
    with open_page(browser, zh_server.url) as page:
        page.get_by_label("Text to classify").fill(ZH_TEXT)
        with page.expect_response(lambda r: r.url.endswith("/v1/explain")) as explained:
            page.get_by_role("button", name="Predict").click()
        expected = httpx.post(f"{zh_server.url}/v1/predict", json={"texts": [ZH_TEXT]}, timeout=30)
        expected = expected.json()["predictions"][0]
        expect(page.locator("#label")).to_have_text(expected["label"])
        probabilities = expected["probabilities"]
        expect(page.locator("#probabilities .name")).to_have_text(
            sorted(probabilities, key=probabilities.get, reverse=True)
        )

        # the tokenizer knows the characters: one token each, none of them [UNK]
        tokens = explained.value.json()["tokens"]
        assert tokens == ["[CLS]", *ZH_TEXT, "[SEP]"], tokens

        # the words: one span per character, in the text's own spelling (no spaces put in),
        # each with its attribution
        expect(page.locator("#words .w").first).to_be_visible()
        expect(page.locator("#words")).to_have_text(ZH_TEXT)
        words = page.locator("#words .w")
        assert words.all_inner_texts() == list(ZH_TEXT)
        for i, char in enumerate(ZH_TEXT):
            title = words.nth(i).get_attribute("title")
            assert re.fullmatch(rf"{re.escape(char)}: [+-]\d\.\d{{4}}", title), title

        # the enlarged attention map carries the characters as its tokens: hovering the cell
        # (query 这, key 书) names both
        page.get_by_role("button", name="layer 1, head 1: enlarge").click()
        expect(page.locator("#map-dialog")).to_be_visible()
        canvas = page.locator("#map-canvas")
        expect(canvas).to_have_attribute(
            "aria-label", f"attention of layer 1, head 1 over {len(tokens)} tokens"
        )
        n = len(tokens)
        cell = max(8, min(40, 560 // n))
        margin = canvas.evaluate("c => c.width") - n * cell - 4
        box = canvas.bounding_box()
        i, j = tokens.index("这"), tokens.index("书")
        page.mouse.move(box["x"] + margin + (j + 0.5) * cell, box["y"] + margin + (i + 0.5) * cell)
        assert re.fullmatch(r"这 → 书: \S+", canvas.get_attribute("title") or ""), (
            canvas.get_attribute("title")
        )
        page.keyboard.press("Escape")
        expect(page.locator("#predict-status")).to_be_empty()
        screenshot(page, tmp_path / "serve-zh.png")
