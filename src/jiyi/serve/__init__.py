"""`jiyi serve`: one model (any format, optionally with a memory) over HTTP.

`jiyi.serve.app.create_app(settings, classifier, memory)` builds the FastAPI app;
`jiyi.serve.batcher.MicroBatcher` gathers concurrent requests into one forward pass;
`jiyi.serve.cli` is the verb. FastAPI, uvicorn and prometheus-client are imported only here:
install them with the extra `jiyi[serve]`.
"""
