"""Data: read labelled files, export the offline corpora, augment examples."""
