"""Dynamic masking for masked-LM pretraining, drawn afresh for every batch.

Per sequence, round(rate x maskable tokens) positions (at least one) are chosen among the
non-special tokens ([CLS], [SEP], [PAD] are never chosen); with whole-word masking whole words
are chosen until the budget is reached. Of the chosen positions 80% become [MASK], 10% a random
ordinary token and 10% stay as they are (BERT). Labels are the original ids at chosen positions
and -100 elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100


@dataclass
class Masker:
    mask_id: int
    special_ids: np.ndarray  # ids never masked, never drawn as random replacements
    vocab_size: int
    rate: float = 0.15
    whole_word: bool = False

    def __post_init__(self) -> None:
        ordinary = np.setdiff1d(np.arange(self.vocab_size), self.special_ids)
        self.ordinary = ordinary if len(ordinary) else np.arange(self.vocab_size)

    def __call__(
        self,
        input_ids: np.ndarray,
        word_starts: np.ndarray,
        attention_mask: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(masked input ids, labels), both (B, L) int64."""
        ids = input_ids.astype(np.int64)
        maskable = attention_mask & ~np.isin(ids, self.special_ids)
        chosen = (
            self._whole_words(maskable, word_starts, rng)
            if self.whole_word
            else self._tokens(maskable, rng)
        )
        labels = np.where(chosen, ids, IGNORE)
        roll = rng.random(ids.shape)
        to_mask = chosen & (roll < 0.8)
        to_random = chosen & (roll >= 0.8) & (roll < 0.9)
        out = ids.copy()
        out[to_mask] = self.mask_id
        out[to_random] = rng.choice(self.ordinary, size=int(to_random.sum()))
        return out, labels

    def budget(self, maskable: np.ndarray) -> np.ndarray:
        n = maskable.sum(axis=1)
        return np.where(n > 0, np.maximum(1, np.rint(n * self.rate)), 0).astype(int)

    def _tokens(self, maskable: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        k = self.budget(maskable)
        scores = np.where(maskable, rng.random(maskable.shape), np.inf)
        ranks = np.argsort(np.argsort(scores, axis=1), axis=1)
        return ranks < k[:, None]

    def _whole_words(
        self, maskable: np.ndarray, starts: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        k = self.budget(maskable)
        chosen = np.zeros_like(maskable)
        for row in range(len(maskable)):
            positions = np.flatnonzero(maskable[row])
            if not len(positions):
                continue
            # a word starts at a marked token, or where a maskable run resumes after a gap
            new_word = starts[row, positions].copy()
            new_word[0] = True
            new_word[1:] |= np.diff(positions) > 1
            word_of = np.cumsum(new_word) - 1
            sizes = np.bincount(word_of)
            taken, picked = 0, []
            for w in rng.permutation(len(sizes)):
                if taken + sizes[w] > k[row]:
                    continue
                picked.append(w)
                taken += sizes[w]
                if taken == k[row]:
                    break
            if not picked:  # every word is longer than the budget: take the smallest
                picked = [int(np.argmin(sizes))]
            chosen[row, positions[np.isin(word_of, picked)]] = True
        return chosen
