"""Run `jiyi embed`, `jiyi predict` and `jiyi memory build` on Ray (`--engine ray`, the extra
`jiyi[scale]`): sharded inputs, one model per worker, Parquet shards plus a manifest, resumable.

`flags` (the CLI flags) imports nothing heavy; `jobs` (the driver), `shards` (planning, reading,
writing) and `workers` (what runs on a Ray actor) import pyarrow, and ray when a job runs.

>>> from jiyi.scale.shards import read_output
>>> read_output("out/vectors").column_names
['row', 'vector']
"""

from jiyi.scale.flags import add_engine_flags, require_ray, use_ray

__all__ = ["add_engine_flags", "require_ray", "use_ray"]
