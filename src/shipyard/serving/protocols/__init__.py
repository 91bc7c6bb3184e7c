"""Wire protocols over the serving core: shipyard's native API (and its plain-ASGI fast
path), MLflow's scoring protocol, the Open Inference Protocol v2. Each turns bodies into
validated columns and predictions into its wire format, through the core's classes
(:mod:`shipyard.serving.base`, :mod:`shipyard.serving.models`); none imports another's
internals but the fast path, which is the native route without the framework."""
