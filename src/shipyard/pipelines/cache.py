"""Step caching: a step whose code, inputs and parameters did not change is not run again.

The cache key is a sha256 over the step's code hash, the pipeline and step names, the
content identity of each input (a dataset's fingerprint, an object's artifact digest),
the effective parameters as canonical JSON, and :data:`CACHE_FORMAT`. A step run that
succeeded under a key is reused while everything it wrote is still stored.

Inputs and outputs are described as plain JSON-able dicts (they are stored in the
``step_runs`` table and sent to child processes)::

    {"kind": "dataset", "ref": "processed/features:3", "fingerprint": "…", "digest": "…"}
    {"kind": "artifact", "digest": "…"}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from shipyard.core.exceptions import NotFoundError
from shipyard.datasets import DatasetInfo, Datasets
from shipyard.datasets.run_records import Runs
from shipyard.pipelines.steps import Step
from shipyard.store import ArtifactStore, Database

#: Bump when the meaning of a cache key changes, so old entries stop matching.
CACHE_FORMAT = 1

#: How many earlier step runs to look through for the newest copy of an object.
_SEARCH_LIMIT = 500


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def identity(described: Mapping[str, Any]) -> str:
    """What stands for an item's content: a dataset's fingerprint, an object's digest."""
    return str(described.get("fingerprint") or described["digest"])


#: A step parameter with this name receives the id of the run executing it.
RUN_ID_PARAM = "run_id"


def cache_key(
    step: Step, pipeline: str, inputs: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]
) -> str:
    """The sha256 that names one (code, inputs, parameters) combination of a step."""
    payload = {
        "format": CACHE_FORMAT,
        "code": step.code_hash,
        "pipeline": pipeline,
        "step": step.name,
        "inputs": sorted((item, identity(d)) for item, d in inputs.items()),
        # The run id a step may ask for says who ran it, not what it computes.
        "params": {k: v for k, v in params.items() if k != RUN_ID_PARAM},
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def describe_dataset(info: DatasetInfo) -> dict[str, Any]:
    """The input/output description of a stored dataset version."""
    return {
        "kind": "dataset",
        "ref": info.ref,
        "fingerprint": info.fingerprint,
        "digest": info.artifact_digest,
    }


def describe_artifact(digest: str) -> dict[str, Any]:
    """The input/output description of a stored object."""
    return {"kind": "artifact", "digest": digest}


def outputs_exist(
    outputs: Mapping[str, Mapping[str, Any]], datasets: Datasets, artifacts: ArtifactStore
) -> bool:
    """True when every recorded output can still be read."""
    for described in outputs.values():
        if not artifacts.exists(str(described["digest"])):
            return False
        if described.get("kind") == "dataset":
            try:
                info = datasets.get(str(described["ref"]))
            except NotFoundError:
                return False
            if info.fingerprint != described.get("fingerprint"):
                return False
    return True


def find_cached(
    key: str, *, database: Database, datasets: Datasets, artifacts: ArtifactStore
) -> dict[str, Any] | None:
    """The outputs of the newest step run that succeeded under ``key`` and can be reused."""
    for outputs in Runs(database).cached_outputs(key, limit=5):
        if outputs_exist(outputs, datasets, artifacts):
            return outputs
    return None


def latest_artifact(
    item: str, *, database: Database, artifacts: ArtifactStore, pipeline: str, producer: str | None
) -> dict[str, Any] | None:
    """The newest stored copy of object ``item`` (``artifacts/NAME``) a step run wrote."""
    found = Runs(database).recent_outputs(_SEARCH_LIMIT, pipeline=pipeline, step=producer)
    for outputs in found:
        described = outputs.get(item)
        if described and artifacts.exists(str(described["digest"])):
            return dict(described)
    return None
