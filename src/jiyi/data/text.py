"""The one way jiyi compares texts for equality: a key that ignores Unicode form, case and
runs of white space (and, when asked, punctuation)."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")


def text_key(text: str, *, drop_punctuation: bool = False) -> str:
    """NFKC, case folded, runs of white space made one space, ends stripped; punctuation
    removed too with `drop_punctuation`.

    >>> text_key("  A  GREAT\\tfilm!! ")
    'a great film!!'
    >>> text_key("  A  GREAT\\tfilm!! ", drop_punctuation=True)
    'a great film'
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    if drop_punctuation:
        text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return _SPACES.sub(" ", text).strip()
