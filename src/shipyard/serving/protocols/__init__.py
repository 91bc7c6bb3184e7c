"""Wire protocols over the serving core: shipyard's native API (and its plain-ASGI fast
path), MLflow's scoring protocol, the Open Inference Protocol v2 over HTTP and over gRPC
(``grpc.py``, its ``.proto`` and the stubs generated from it). Each turns bodies into
validated columns and predictions into its wire format, written against the core's protocol
classes only (:mod:`shipyard.serving.base`: ``ModelLookup``, ``ServedModel``, reached through
:mod:`shipyard.serving.state`), never the model manager (import-linter holds this); none
imports another's internals but the fast path, which is the native route without the
framework."""
