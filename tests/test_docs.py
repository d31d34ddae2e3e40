"""The README's and docs/'s commands run as written after `make demo`.

Every shell code block (```bash) of README.md and docs/*.md is read command by command: each
`jiyi ...` line (also `python -m jiyi`, `accelerate launch ... -m jiyi`, `torchrun ... -m jiyi`)
is parsed by jiyi's own argparse parser, so every verb and flag exists, and every path it reads
must be made by `make demo`, by an earlier command of the same page (an `--output`, a `> FILE`
redirection) or be shipped in the repository (examples/, configs/). `make` lines name real
targets. Blocks fenced as ```text are templates for the user's own files and are not checked.
The checker itself is tested on pages that must fail.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from jiyi.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_FENCES = ("bash", "sh", "shell", "console")

# What `make demo` leaves (examples/demo.py with the Makefile's DEMO_DIR): exact paths only.
DEMO_RUN, DEMO_DATA = "runs/demo", "data/rotten-tomatoes"
MAKE_DEMO = {
    DEMO_DATA,
    *(f"{DEMO_DATA}/{split}.csv" for split in ("train", "validation", "test")),
    DEMO_RUN,
    *(f"{DEMO_RUN}/{name}" for name in ("model", "eval", "config.yaml", "metrics.jsonl", "logs")),
    f"{DEMO_RUN}/eval/report.html",
    f"{DEMO_RUN}/eval/metrics.json",
    f"{DEMO_RUN}/examples.txt",
}
OUTPUT_DESTS = {"output", "write_clean"}  # flags whose value a command creates
PATH_LIKE = re.compile(r"\.(csv|tsv|jsonl|json|txt|conll|parquet|npy|ya?ml|gz|html|png|tsv)$")
SEPARATORS = {"|", "||", "&&", ";", "&"}


@dataclass
class Command:
    line: int
    words: list[str]
    writes: list[str] = field(default_factory=list)  # > FILE, >> FILE
    reads: list[str] = field(default_factory=list)  # < FILE


def shell_blocks(markdown: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of every ```bash (or sh, shell, console) block."""
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", markdown, re.M | re.S):
        if match.group(1) in SHELL_FENCES:
            yield markdown.count("\n", 0, match.start(2)) + 1, match.group(2)


def commands(block: str, first_line: int = 1) -> Iterator[Command]:
    """The simple commands of a shell block, in order: continuation lines joined, comments
    dropped, heredoc bodies skipped, pipelines and lists split, redirections taken apart."""
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        start, text = i, lines[i]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + " " + lines[i]
        i += 1
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)", text)
        if heredoc:  # skip the body, up to the delimiter line
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                i += 1
            i += 1
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        command = Command(first_line + start, [])
        j = 0
        while j < len(tokens):
            token = tokens[j]
            if token in SEPARATORS:
                if command.words:
                    yield command
                command = Command(first_line + start, [])
            elif token in (">", ">>", "<", "<<") and j + 1 < len(tokens):
                j += 1
                target = tokens[j]
                if token in (">", ">>"):
                    command.writes.append(target)
                elif token == "<":
                    command.reads.append(target)
            else:
                command.words.append(token)
            j += 1
        if command.words or command.writes:
            yield command


def jiyi_argv(words: list[str]) -> list[str] | None:
    """The arguments after `jiyi` (or `-m jiyi`); None for any other program."""
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words = words[1:]  # VAR=value prefixes
    if words and words[0] == "jiyi":
        return words[1:]
    for k in range(len(words) - 1):
        if words[k] == "-m" and words[k + 1] == "jiyi":
            return words[k + 2 :]
    return None


def norm(path: str) -> str:
    return os.path.normpath(path)


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, re.M))


def check_page(markdown: str) -> list[str]:
    """Every problem of a page's shell commands, as 'line N: ...' (empty: the page is sound)."""
    parser = build_parser()
    targets = make_targets()
    made = set(MAKE_DEMO)  # exact paths
    made_dirs: set[str] = set()  # folders an earlier command created: anything below counts
    problems: list[str] = []

    def exists(path: str) -> bool:
        p = norm(path)
        if p in made or any(p == d or p.startswith(d + os.sep) for d in made_dirs):
            return True
        top = Path(p).parts[0] if Path(p).parts else ""
        return top not in ("runs", "data", ".venv") and (REPO / p).exists()

    for first, block in shell_blocks(markdown):
        for command in commands(block, first):
            where = f"line {command.line}"
            for path in command.reads:
                if not exists(path):
                    problems.append(f"{where}: reads {path}, which nothing made")
            argv = jiyi_argv(command.words)
            if command.words[:1] == ["make"]:
                for target in command.words[1:]:
                    if target not in targets:
                        problems.append(f"{where}: make {target}: no such Makefile target")
            if argv is not None:
                stderr = io.StringIO()
                try:
                    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stderr):
                        namespace = parser.parse_args(argv)
                except SystemExit:
                    last = stderr.getvalue().strip().splitlines()[-1:] or ["refused"]
                    problems.append(f"{where}: jiyi {shlex.join(argv)}: {last[0]}")
                    continue
                for dest, value in vars(namespace).items():
                    values = value if isinstance(value, list) else [value]
                    for v in values:
                        if not isinstance(v, str) or " " in v:
                            continue
                        if dest in OUTPUT_DESTS:
                            made_dirs.add(norm(v))
                        elif ("/" in v or PATH_LIKE.search(v)) and not exists(v):
                            problems.append(
                                f"{where}: {v} (--{dest}) is not made by `make demo`, "
                                "an earlier command of this page, or the repository"
                            )
            for path in command.writes:
                made.add(norm(path))
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_of_the_page_runs_after_make_demo(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    problems = check_page(text)
    assert problems == [], f"{page.relative_to(REPO)}:\n" + "\n".join(problems)


def test_the_checker_fails_on_what_a_reader_could_not_run() -> None:
    def page(*lines: str) -> str:
        return "```bash\n" + "\n".join(lines) + "\n```\n"

    assert check_page(page("jiyi trian --model minilm")) != []  # no such verb
    unknown_flag = "jiyi predict runs/demo --input runs/demo/examples.txt --epochz 3"
    assert "--epochz" in check_page(page(unknown_flag))[0]
    old_paths = check_page(page("jiyi predict runs/rt --input data/rt/test.csv"))
    assert len(old_paths) == 2 and "runs/rt" in old_paths[0] and "data/rt/test.csv" in old_paths[1]
    assert check_page(page("jiyi evaluate runs/demo/nothing --data data/rotten-tomatoes/test.csv"))
    assert check_page(page("make dmeo")) == ["line 2: make dmeo: no such Makefile target"]
    # order matters: a folder is made by an earlier --output, a file by an earlier > FILE
    train = "jiyi train --model minilm --train data/rotten-tomatoes/train.csv --output runs/x"
    use = "jiyi predict runs/x/model --input runs/extra.txt"
    assert len(check_page(page(use, train))) == 2
    assert check_page(page("printf 'a b' > runs/extra.txt", train, use)) == []
    # heredoc bodies are not commands; continuation lines are one command; comments are dropped
    heredoc = ["cat > runs/a.txt <<'EOF'", "jiyi nonsense", "EOF", "jiyi predict runs/demo \\"]
    assert check_page(page(*heredoc, "    --input runs/a.txt   # a comment --bogus")) == []
    assert check_page(page(*heredoc, "    --input runs/b.txt")) != []
    # piped and environment-prefixed commands are checked too; ```text templates are not
    assert check_page(page('echo "a film" | jiyi predict runs/rt')) != []
    assert check_page(page("JIYI_TOKEN=t jiyi serve runs/demo --port 9 --bogus")) != []
    assert check_page(page("accelerate launch -m jiyi train --model minilm --trian x.csv")) != []
    assert check_page("```text\njiyi train --model M --train YOURS.csv --output runs/y\n```") == []


def test_make_demo_makes_what_the_checker_assumes() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^DEMO_DIR \?= {DEMO_RUN}$", makefile, re.M)
    assert "examples/demo.py --output $(DEMO_DIR)" in makefile
    demo = (REPO / "examples" / "demo.py").read_text(encoding="utf-8")
    defaults = {
        node.args[0].value: kw.value.value
        for node in ast.walk(ast.parse(demo))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
        for kw in node.keywords
        if kw.arg == "default" and isinstance(kw.value, ast.Constant)
    }
    assert defaults["--output"] == DEMO_RUN and defaults["--data"] == DEMO_DATA
    assert '"examples.txt"' in demo and '"--test"' in demo  # the test split: eval/report.html


def test_the_readme_is_short_and_every_link_and_picture_resolves() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 220
    assert "make demo" in readme and "make test" in readme  # .ci/run runs `make test`
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path = (page.parent / target).resolve()
            assert path.exists(), f"{page.name} links to {target}, which does not exist"
            if path.suffix == ".png":
                assert path.stat().st_size < 200_000, f"{target} is over 200 KB"
    for doc in (REPO / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in readme, f"the README does not link to docs/{doc.name}"
