"""Abstractive summarization and translation (`jiyi train --task seq2seq`): source/target pairs,
encoder-decoders (T5, BART, Marian, or BERT2BERT warm-started from two encoders, optionally with
shared parameters), greedy and beam-search generation, ROUGE / BLEU / chrF."""
