"""Pretraining from scratch: a WordPiece tokenizer trained on a raw-text corpus
(`jiyi.pretrain.tokenizer`), and the corpus readers the pretraining run shares with it."""
