"""Steps: plain Python functions with named dataset inputs, outputs and parameters.

::

    from shipyard import step

    @step(inputs={"customers": "raw/customers"}, outputs="processed/features")
    def featurize(customers: pd.DataFrame, min_tenure: int = 0) -> pd.DataFrame:
        return customers[customers.tenure_months >= min_tenure]

Data items are named ``ZONE/NAME`` (a DataFrame stored as a dataset version in the
``raw``, ``processed`` or ``predictions`` zone) or ``artifacts/NAME`` (any Python object,
such as a fitted model, stored with cloudpickle for the next step of the same project).
Every function parameter that is not an input is a parameter: it needs a default, which
shipyard.toml (``[pipelines.NAME.params]``) or ``--param STEP.KEY=VALUE`` may override.
A step with several outputs returns a dict keyed by output name (or a tuple in order).
"""

from __future__ import annotations

import hashlib
import inspect
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from shipyard.core.exceptions import ConfigError
from shipyard.core.refs import ZONES, DatasetRef, check_name

#: The prefix of data items that are Python objects rather than datasets.
ARTIFACTS = "artifacts"


def is_dataset(item: str) -> bool:
    """True for ``ZONE/NAME`` items (DataFrames), False for ``artifacts/NAME`` (objects)."""
    return item.split("/", 1)[0] in ZONES


def check_item(item: str, where: str) -> str:
    """Return ``item`` if it is ``ZONE/NAME`` or ``artifacts/NAME``, else raise."""
    zone, sep, name = item.partition("/")
    if sep and zone == ARTIFACTS:
        check_name(name)
        return item
    try:
        ref = DatasetRef.parse(item)
    except Exception as exc:
        raise ConfigError(
            f"{where}: {item!r} is not a data item; name datasets ZONE/NAME with ZONE one of "
            f"{', '.join(ZONES)} (e.g. processed/features), objects artifacts/NAME"
        ) from exc
    if ref.version is not None:
        raise ConfigError(f"{where}: {item!r} pins a version; steps read the newest version")
    return item


@dataclass(frozen=True)
class Step:
    """A function and what it reads and writes."""

    func: Callable[..., Any]
    name: str
    inputs: Mapping[str, str]
    outputs: tuple[str, ...]
    params: Mapping[str, Any]
    retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    cache: bool = True
    module_path: str | None = field(default=None, compare=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the plain function (steps stay unit-testable)."""
        return self.func(*args, **kwargs)

    @property
    def source(self) -> str:
        """The function's source code (part of the cache key)."""
        try:
            return textwrap.dedent(inspect.getsource(self.func))
        except (OSError, TypeError):
            return f"{self.func.__module__}.{self.func.__qualname__}"

    @property
    def code_hash(self) -> str:
        """sha256 of the step's source: editing the function invalidates its cache."""
        return hashlib.sha256(self.source.encode()).hexdigest()

    def param_annotations(self) -> dict[str, Any]:
        """Annotations of the function's parameters and return (strings resolved if possible)."""
        try:
            return dict(inspect.get_annotations(self.func, eval_str=True))
        except Exception:  # unresolvable string annotations: no type checks then
            return {}


@overload
def step(
    func: Callable[..., Any],
    /,
    *,
    inputs: Mapping[str, str] | None = None,
    outputs: str | Sequence[str] = (),
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
    timeout: float | None = None,
    cache: bool = True,
) -> Step: ...


@overload
def step(
    *,
    inputs: Mapping[str, str] | None = None,
    outputs: str | Sequence[str] = (),
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
    timeout: float | None = None,
    cache: bool = True,
) -> Callable[[Callable[..., Any]], Step]: ...


def step(
    func: Callable[..., Any] | None = None,
    /,
    *,
    inputs: Mapping[str, str] | None = None,
    outputs: str | Sequence[str] = (),
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
    timeout: float | None = None,
    cache: bool = True,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Declare a pipeline step (usable as ``@step`` or ``@step(...)``)."""

    def wrap(target: Callable[..., Any]) -> Step:
        step_name = name or target.__name__
        where = f"step {step_name!r}"
        check_name(step_name)
        declared = {str(k): check_item(str(v), where) for k, v in (inputs or {}).items()}
        outs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
        outs = tuple(check_item(o, where) for o in outs)
        if len(set(outs)) != len(outs):
            raise ConfigError(f"{where} lists an output twice: {', '.join(outs)}")
        signature = inspect.signature(target)
        unknown = [p for p in declared if p not in signature.parameters]
        if unknown:
            raise ConfigError(
                f"{where} declares input {unknown[0]!r} but {target.__name__}() has no such "
                "parameter; name each input after a function parameter"
            )
        params: dict[str, Any] = {}
        for pname, parameter in signature.parameters.items():
            if pname in declared:
                continue
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise ConfigError(f"{where}: *args / **kwargs are not supported in steps")
            if parameter.default is inspect.Parameter.empty:
                raise ConfigError(
                    f"{where}: parameter {pname!r} is neither an input nor has a default; "
                    f"add it to inputs={{'{pname}': 'ZONE/NAME'}} or give it a default value"
                )
            params[pname] = parameter.default
        if retries < 0 or retry_delay < 0 or (timeout is not None and timeout <= 0):
            raise ConfigError(f"{where}: retries, retry_delay and timeout must be positive")
        return Step(
            func=target,
            name=step_name,
            inputs=declared,
            outputs=outs,
            params=params,
            retries=retries,
            retry_delay=retry_delay,
            timeout=timeout,
            cache=cache,
            module_path=getattr(inspect.getmodule(target), "__file__", None),
        )

    if func is not None:
        return wrap(func)
    return wrap
