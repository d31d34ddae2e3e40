"""`--engine ray` (jiyi.scale): the same vectors, labels and row order as `--engine local`, a
re-run that skips finished shards, and one clear message for each bad input.

One local Ray (2 CPUs) serves the whole module: starting Ray takes seconds on 2 cores.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from jiyi.cli import main

pytest.importorskip("ray.data")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def inputs(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of three files of the tiny train set with ids: a.csv (100 rows), b.jsonl (80),
    c.parquet (60), which sort in that order."""
    rows = csv_rows(tiny_data_dir / "train.csv")
    folder = tmp_path_factory.mktemp("scale-inputs")
    with open(folder / "a.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        w.writerows([f"r{i}", r["text"], r["label"]] for i, r in enumerate(rows[:100]))
    with open(folder / "b.jsonl", "w", encoding="utf-8") as f:
        for i, r in enumerate(rows[100:180], start=100):
            f.write(json.dumps({"id": f"r{i}", "text": r["text"]}) + "\n")
    table = pa.table(
        {"id": [f"r{i}" for i in range(180, 240)], "text": [r["text"] for r in rows[180:240]]}
    )
    pq.write_table(table, folder / "c.parquet", row_group_size=25)  # a shard spans row groups
    (folder / "notes.md").write_text("not data: a folder's other files are left alone\n")
    return folder


def local_vectors(model: Path, inputs: Path, tmp: Path, *extra: str) -> np.ndarray:
    parts = []
    for name in ("a.csv", "b.jsonl", "c.parquet"):
        out = tmp / f"{name}.npy"
        assert main(["embed", str(model), "--input", str(inputs / name), "--output", str(out),
                     *extra]) == 0  # fmt: skip
        parts.append(np.load(out))
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def ray_vectors_dir(
    ray_instance: None, tiny_model_dir: Path, inputs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("scale-embed") / "vectors"
    argv = ["embed", str(tiny_model_dir), "--input", str(inputs), "--output", str(out),
            "--engine", "ray", "--workers", "2", "--shard-rows", "32", "--normalize"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_embed_on_ray_gives_the_local_vectors_in_input_order(
    ray_vectors_dir: Path, tiny_model_dir: Path, inputs: Path, tmp_path: Path
) -> None:
    from jiyi.scale.jobs import output_vectors
    from jiyi.scale.shards import read_output

    expected = local_vectors(tiny_model_dir, inputs, tmp_path, "--normalize")
    got = output_vectors(ray_vectors_dir)
    assert got.shape == expected.shape == (240, 32)
    assert np.abs(got - expected).max() <= 1e-5
    table = read_output(ray_vectors_dir)
    assert table.column_names == ["row", "id", "vector"]
    assert table.column("row").to_pylist() == list(range(240))
    assert table.column("id").to_pylist() == [f"r{i}" for i in range(240)]
    manifest = json.loads((ray_vectors_dir / "manifest.json").read_text())
    # 100 rows -> 4 shards, 80 -> 3, 60 -> 2; never across files
    assert [(s["input"], s["start"], s["stop"]) for s in manifest["shards"]] == [
        (0, 0, 32), (0, 32, 64), (0, 64, 96), (0, 96, 100),
        (1, 0, 32), (1, 32, 64), (1, 64, 80), (2, 0, 32), (2, 32, 60),
    ]  # fmt: skip
    assert [Path(i["path"]).name for i in manifest["inputs"]] == ["a.csv", "b.jsonl", "c.parquet"]
    assert manifest["complete"] and manifest["rows"] == 240 and manifest["dim"] == 32
    assert manifest["settings"]["normalize"] is True
    assert sorted(p.name for p in ray_vectors_dir.iterdir()) == [
        "manifest.json", *(f"part-{i:05d}.parquet" for i in range(9))
    ]  # fmt: skip


def test_a_rerun_skips_finished_shards_and_redoes_a_missing_one(
    ray_vectors_dir: Path, tiny_model_dir: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jiyi.scale.jobs import output_vectors

    before = output_vectors(ray_vectors_dir)
    (ray_vectors_dir / "part-00004.parquet").unlink()  # as if the job died before writing it
    (ray_vectors_dir / "part-00007.parquet").write_bytes(b"torn")  # or a hand-made mess
    kept = {
        p.name: p.stat().st_mtime_ns
        for p in ray_vectors_dir.glob("part-*.parquet")
        if p.name != "part-00007.parquet"
    }
    argv = ["embed", str(tiny_model_dir), "--input", str(inputs), "--output", str(ray_vectors_dir),
            "--engine", "ray", "--workers", "2", "--shard-rows", "32", "--normalize"]  # fmt: skip
    assert main(argv) == 0
    assert "7 finished shards skipped" in capsys.readouterr().err
    assert {n: (ray_vectors_dir / n).stat().st_mtime_ns for n in kept} == kept
    assert np.abs(output_vectors(ray_vectors_dir) - before).max() <= 1e-6
    # everything finished: nothing to run, Ray is not even needed
    assert main(argv) == 0
    assert "9 finished shards skipped" in capsys.readouterr().err


def test_another_job_in_the_same_output_is_refused(
    ray_vectors_dir: Path, tiny_model_dir: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["embed", str(tiny_model_dir), "--input", str(inputs), "--output", str(ray_vectors_dir),
            "--engine", "ray", "--shard-rows", "32", "--pooling", "cls"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds the shards of another job (settings differ)" in err
    assert "Traceback" not in err


def test_predict_on_ray_gives_the_local_labels(
    ray_instance: None, trained_run: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    from jiyi.scale.shards import read_output

    data = tiny_data_dir / "test.csv"
    local = tmp_path / "local.jsonl"
    assert main(["predict", str(trained_run), "--input", str(data), "--output", str(local)]) == 0
    expected = [json.loads(line) for line in local.read_text().splitlines()]
    out = tmp_path / "ray"
    argv = ["predict", str(trained_run), "--input", str(data), "--output", str(out),
            "--engine", "ray", "--workers", "2", "--shard-rows", "25"]  # fmt: skip
    assert main(argv) == 0
    table = read_output(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert table.column("row").to_pylist() == list(range(60))
    assert table.column("label").to_pylist() == [r["label"] for r in expected]
    assert set(table.column("label").to_pylist()) == {"pos", "neg"}  # the run learnt both
    probs = np.asarray(table.column("probabilities").to_pylist())  # (60, C)
    want = np.asarray([[r["probabilities"][x] for x in manifest["labels"]] for r in expected])
    assert np.abs(probs - want).max() <= 1e-5
    scores = np.asarray(table.column("score").to_pylist())  # rounded to 6 places: batches differ
    assert np.abs(scores - [r["score"] for r in expected]).max() <= 2e-6


def test_memory_build_on_ray_stores_the_local_vectors(
    ray_instance: None, tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    from jiyi.memory.knn import Memory

    base = ["memory", "build", str(tiny_model_dir), "--data", str(tiny_data_dir / "train.csv")]
    assert main([*base, "--output", str(tmp_path / "local")]) == 0
    assert main([*base, "--output", str(tmp_path / "ray"), "--engine", "ray"]) == 0
    local, on_ray = Memory.open(tmp_path / "local"), Memory.open(tmp_path / "ray")
    assert on_ray.manifest["fingerprint"] == local.manifest["fingerprint"]
    assert list(on_ray.state.rows.ids) == list(local.state.rows.ids)
    assert np.abs(on_ray.state.rows.vectors() - local.state.rows.vectors()).max() <= 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local", "ray"]  # work folder gone


def test_worker_errors_reach_the_user_as_one_message() -> None:
    from ray.exceptions import RayTaskError

    from jiyi.errors import JiyiError
    from jiyi.scale.jobs import user_error

    cause = JiyiError("--input x.csv: has changed since the job was planned")
    wrapped = RayTaskError("ShardWorker.__call__", "Traceback ...", cause).as_instanceof_cause()
    try:
        raise RuntimeError("ray data failed") from wrapped
    except RuntimeError as e:
        found = user_error(e)
    assert isinstance(found, JiyiError) and str(found) == str(cause)
    assert user_error(RuntimeError("a bug")) is None


def bad_runs(model: Path, inputs: Path, run: Path, tmp: Path) -> list[tuple[list[str], str]]:
    """(argv, what the one error line says) for inputs refused before Ray starts."""
    embed = ["embed", str(model), "--output", str(tmp / "out")]
    ray = ["--engine", "ray"]
    (tmp / "empty").mkdir()
    (tmp / "full").mkdir()
    (tmp / "full" / "x.txt").write_text("someone else's file\n")
    (tmp / "mixed").mkdir()
    (tmp / "mixed" / "a.csv").write_text("id,text\n1,good film\n")
    (tmp / "mixed" / "b.csv").write_text("text\ndull film\n")
    return [
        ([*embed, "--input", str(inputs), "--workers", "2"], "--workers goes with --engine ray"),
        ([*embed, "--input", str(inputs), *ray, "--workers", "0"], "--workers 0: must be at least 1"),
        ([*embed, "--input", "-", *ray], "not standard input"),
        ([*embed, "--input", str(tmp / "nope-*.csv"), *ray], "matches no file"),
        ([*embed, "--input", str(tmp / "nope"), *ray], "no such file, folder or glob"),
        ([*embed, "--input", str(tmp / "empty"), *ray], "holds no .txt, .csv"),
        ([*embed, "--input", str(tmp / "mixed"), *ray], "has an id column but"),
        ([*embed, "--input", str(inputs), *ray, "--text-column", "body"], 'no column "body"'),
        (["embed", str(model), "--input", str(inputs), "--output", str(tmp / "full"), *ray],
         "not empty and holds no manifest.json"),
        (["predict", str(run), "--input", str(inputs), "--output", str(tmp / "p"), *ray,
          "--memory", str(tmp)], "--memory: not with --engine ray"),
        (["predict", str(run), "--input", str(inputs), *ray], "give --output DIR"),
    ]  # fmt: skip


def test_bad_input_is_one_message_and_exit_2(
    tiny_model_dir: Path,
    inputs: Path,
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv, message in bad_runs(tiny_model_dir, inputs, trained_run, tmp_path):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "out").exists()


def test_without_ray_the_error_names_the_extra(
    tiny_model_dir: Path, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    argv = ["embed", str(tiny_model_dir), "--input", str(inputs), "--output", str(tmp_path / "o"),
            "--engine", "ray"]  # fmt: skip
    with pytest.raises(Exception) as info:
        from jiyi.cli import build_parser
        from jiyi.scale import use_ray

        use_ray(build_parser().parse_args(argv))
    assert "pip install 'jiyi[scale]'" in str(info.value)
    assert main(argv) == 2


def test_summarize_on_ray_gives_the_local_summaries(
    ray_instance: None,
    tiny_model_dir: Path,
    inputs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from jiyi.scale.shards import read_output

    out = tmp_path / "summaries"
    argv = ["summarize", str(tiny_model_dir), "--input", str(inputs), "--output", str(out),
            "--engine", "ray", "--workers", "2", "--shard-rows", "50", "--sentences", "2"]  # fmt: skip
    assert main(argv) == 0
    table = read_output(out)
    assert table.column("row").to_pylist() == list(range(240))
    assert table.column("id").to_pylist()[:2] == ["r0", "r1"]
    capsys.readouterr()
    local_argv = ["summarize", str(tiny_model_dir), "--input", str(inputs / "a.csv"), "--json",
                  "--sentences", "2"]  # fmt: skip
    assert main(local_argv) == 0
    local = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(local) == 100
    assert table.column("summary").to_pylist()[:100] == [r["summary"] for r in local]
    assert table.column("n_sentences").to_pylist()[:100] == [r["n_sentences"] for r in local]
    picks = [json.loads(s) for s in table.column("sentences").to_pylist()[:100]]
    assert [[(p["text"], p["start"], p["end"]) for p in row] for row in picks] == [
        [(p["text"], p["start"], p["end"]) for p in r["sentences"]] for r in local
    ]
    for bad, message in (
        ([*local_argv, "--output", str(tmp_path / "x")], "--output goes with --engine ray"),
        (argv[:4] + argv[6:], "give --output DIR"),
        ([*argv[:-2], "--ratio", "2"], "--ratio 2.0: must lie in (0, 1]"),
    ):
        assert main(bad) == 2, bad
        assert message in capsys.readouterr().err
