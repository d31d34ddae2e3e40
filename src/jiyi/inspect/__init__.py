"""Look inside the memory: context vectors, attention, attributions, probes, drift."""
