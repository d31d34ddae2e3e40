"""`jiyi serve`: one model (any format, optionally with a memory) over HTTP.

The package, split by concern:

- `cli` the verb; `services` picks the service of a run from the task registry
  (`jiyi.tasks`, `TaskSpec.service`) and loads it: `load_service("runs/demo")`;
- `service` the base every service shares; `classification`, `ner`, `qa` one service each, with
  its own routes; `routes` the /v1 routes services share (explain, embed, memory, FAQ ask);
- `app` `create_app(settings, service)`: the page, probes, metrics and /v1/info, then the
  service's routes, and the middleware; nothing in it depends on the task;
- `schemas` request and response bodies; `errors` the one error shape and its handlers;
  `metrics` Prometheus; `middleware` guard, auth and body limits; `settings` the flags;
- `batcher` the `MicroBatcher` that gathers concurrent requests into one forward pass.

FastAPI, uvicorn and prometheus-client are imported only here: install them with the extra
`jiyi[serve]`.
"""
