"""Help that guides: the verbs of `jiyi --help` in groups, and argument errors that say what was
probably meant, with the usage of the verb at fault.

    $ jiyi train --epoch 3
    usage: jiyi train --train FILE --output RUN_DIR [--model MODEL] [--task TASK] [options]
    jiyi train: error: unknown flag --epoch; did you mean --epochs? (all flags: jiyi train --help)
    $ jiyi trian
    jiyi: error: unknown verb 'trian'; did you mean train? (verbs: jiyi --help)
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

# The map of `jiyi --help`: every verb in exactly one group (tests/test_help.py checks it); a
# name no verb has yet (`card` until its parser is added) is left out of the listing.
VERB_GROUPS: dict[str, tuple[str, ...]] = {
    "train & evaluate": ("train", "tune", "evaluate", "calibrate", "predict", "card", "data"),
    "inspect": ("embed", "probe", "drift", "explain", "summarize"),
    "memory": ("memory", "ask"),
    "shrink & serve": ("compress", "serve"),
    "form": ("pretrain", "tokenizer"),
    "practice": ("curve", "bias", "audit", "select", "env"),
}

_INVALID_CHOICE = re.compile(
    r"argument (?P<arg>.+?): invalid choice: (?P<value>'.*?'|\S+) \(choose"
)


def close_match(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to a misspelt word, None when nothing is close (difflib ratio 0.6).

    >>> close_match("--epoch", ["--epochs", "--lr"]), close_match("trian", ["train", "predict"])
    ('--epochs', 'train')
    """
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """ "; did you mean X?" when one candidate is close, else ""."""
    match = close_match(word, candidates)
    return f"; did you mean {match}?" if match else ""


class JiyiArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors come from the verb at fault, with a close-match suggestion.

    Unknown flags are reported by the verb's own parser (argparse leaves them to the top parser,
    which prints the top-level usage); prefixes of flags are not accepted (`--epoch` is not
    `--epochs`: a new flag sharing the prefix would silently change what an old command means).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.verbs: argparse.Action | None = None

    def add_subparsers(self, **kwargs: Any) -> Any:
        self.verbs = super().add_subparsers(**kwargs)
        return self.verbs

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(self.unknown_message(extras))
        return namespace, extras

    def flags(self) -> list[str]:
        """Every option string this parser (not its verbs) accepts."""
        return [s for action in self._actions for s in action.option_strings]

    def unknown_message(self, extras: Sequence[str]) -> str:
        """`--epoch 3` -> "unknown flag --epoch; did you mean --epochs?"."""
        flags = [e.split("=", 1)[0] for e in extras if e.startswith("-") and e != "-"]
        if flags:
            word = flags[0]
            head = f"unknown flag {word}{did_you_mean(word, self.flags())}"
            more = f" (and {', '.join(flags[1:])})" if len(flags) > 1 else ""
            return f"{head}{more} (all flags: {self.prog} --help)"
        return (
            f"unexpected argument{'s' if len(extras) > 1 else ''} "
            f"{' '.join(repr(e) for e in extras)} (see {self.prog} --help)"
        )

    def error(self, message: str) -> NoReturn:
        """Usage of this parser, then one line: "PROG: error: MESSAGE", exit 2."""
        if m := _INVALID_CHOICE.match(message):
            value = m["value"].strip("'")
            choices = re.findall(r"'([^']*)'", message[m.end() :])
            if self.verbs is not None and m["arg"] == self.verbs.metavar:
                self.print_usage(sys.stderr)
                kind = "verb" if self.prog == "jiyi" else "action"
                self.exit(
                    2,
                    f"{self.prog}: error: unknown {kind} {value!r}{did_you_mean(value, choices)} "
                    f"(choose from {', '.join(choices)}; see {self.prog} --help)\n",
                )
            message += did_you_mean(value, choices)
        super().error(message)


def verb_map(verbs: Any) -> str:
    """The grouped verb listing of `jiyi --help`, one line per verb (its `help=`)."""
    lines = {a.dest: a.help or "" for a in verbs._choices_actions}  # one line per add_parser
    width = max(len(v) for v in lines) + 2
    out = ["verbs (jiyi VERB --help for each):"]
    for group, names in VERB_GROUPS.items():
        out.append(f"  {group}:")
        out.extend(f"    {name:<{width}}{lines[name]}" for name in names if name in lines)
    return "\n".join(out) + "\n"


def ungrouped_verbs(verbs: Any) -> list[str]:
    """Verbs `VERB_GROUPS` forgets (each must sit in one group)."""
    grouped = {v for names in VERB_GROUPS.values() for v in names}
    return [name for name in verbs.choices if name not in grouped]
