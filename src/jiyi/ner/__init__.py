"""Named-entity recognition: tag schemes (BIO, BIOES) and spans, CoNLL and JSONL readers."""
