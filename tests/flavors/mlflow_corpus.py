"""A corpus of model folders written by MLflow itself, to import and score as MLflow scores them.

Each model is trained on a few hundred customer rows with missing values (``amount`` NaN,
``plan`` None), an integer column (``tenure``) and a text column, and saved with MLflow's
own ``save_model``; its signature is the one MLflow infers from those rows (``amount`` and
``plan`` optional, ``tenure`` a required ``long``, ``score`` a required ``double``). The
rows to score come in variants, each missing values somewhere else; whether MLflow scores a
variant is decided by ``mlflow.pyfunc`` itself in the tests, never assumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ["amount", "tenure", "plan", "score"]
NUMBERS = ["amount", "tenure", "score"]
HGB_TREES = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


def customers(n: int, seed: int) -> pd.DataFrame:
    """Customer rows: ``amount`` (float, ~15% NaN), ``tenure`` (int), ``plan`` (text, ~10%
    None), ``score`` (float, never missing here)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 40.0, n).round(2),
            "tenure": rng.integers(0, 72, n),
            "plan": pd.Series(rng.choice(["basic", "plus", "pro"], n), dtype=object),
            "score": rng.normal(0.0, 1.0, n).round(4),
        }
    )
    frame.loc[rng.random(n) < 0.15, "amount"] = np.nan
    frame.loc[rng.random(n) < 0.1, "plan"] = None
    frame.loc[[1, 2], "amount"] = np.nan  # every sample shows both kinds of missing value
    frame.loc[[2, 3], "plan"] = None
    return frame


def churned(frame: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """A noisy binary label depending on every column."""
    rng = np.random.default_rng(seed)
    logit = (
        frame["amount"].fillna(80.0) / 40.0
        - frame["tenure"] / 24.0
        + (frame["plan"] == "basic") * 1.0
        + frame["score"]
    )
    return (logit + rng.normal(0.0, 0.7, len(frame)) > 1.0).astype("int64").to_numpy()


def spend(frame: pd.DataFrame) -> np.ndarray:
    """A regression target depending on every column."""
    plan = frame["plan"].map({"basic": 1.0, "plus": 2.0, "pro": 3.0}).fillna(0.0)
    return (
        frame["amount"].fillna(50.0) * 0.1 + frame["tenure"] * 0.3 + plan + frame["score"]
    ).to_numpy()


def variants(columns: list[str]) -> dict[str, pd.DataFrame]:
    """Rows to score, by where they miss values: only in the columns the signature marks
    optional, also in a required float column, or in the integer column."""
    optional = customers(80, 11)[columns]
    anywhere = optional.copy()
    anywhere.loc[anywhere.index[::4], "score"] = np.nan
    found = {"optional": optional, "anywhere": anywhere}
    if "tenure" in columns:
        integer = optional.astype({"tenure": "float64"})
        integer.loc[integer.index[5], "tenure"] = np.nan
        found["integer"] = integer
    return found


@dataclass
class MlflowModel:
    """One folder MLflow wrote, with the rows to score it on."""

    name: str
    folder: Path
    #: Variant name -> rows (a DataFrame in the signature's columns).
    rows: dict[str, pd.DataFrame]
    #: Variants MLflow is expected to refuse (checked against mlflow.pyfunc, not assumed).
    refused: set[str] = field(default_factory=set)
    #: True when the signature is one unnamed tensor: MLflow is given the rows as an array.
    tensor: bool = False
    #: ``skops_trusted_types`` written into the MLmodel, if any.
    declared: list[str] | None = None

    def mlflow_input(self, frame: pd.DataFrame) -> Any:
        """What a user hands ``mlflow.pyfunc``'s ``predict`` for these rows."""
        return frame.to_numpy(dtype="float64") if self.tensor else frame


def _save_sklearn(
    model: Any, folder: Path, serialization: str, X: pd.DataFrame, y: Any
) -> list[str] | None:
    """Save with MLflow; return the ``skops_trusted_types`` written (skops only)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    trusted: list[str] | None = None
    if serialization == "skops":
        import skops.io as sio

        trusted = sorted(sio.get_untrusted_types(data=sio.dumps(model)))
    mlflow.sklearn.save_model(
        model,
        str(folder),
        serialization_format=serialization,
        skops_trusted_types=trusted,
        signature=infer_signature(X, y),
        input_example=X.head(3),
        pip_requirements=["scikit-learn"],
    )
    return trusted


def logreg_skops(root: Path) -> MlflowModel:
    """LogisticRegression behind imputers for ``amount`` and ``plan`` only (skops)."""
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X = customers(300, 0)
    encode = make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["amount"]),
        (
            make_pipeline(
                SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
            ),
            ["plan"],
        ),
        (StandardScaler(), ["tenure", "score"]),
    )
    model = make_pipeline(encode, LogisticRegression()).fit(X, churned(X))
    folder = root / "logreg-skops"
    declared = _save_sklearn(model, folder, "skops", X, model.predict(X))
    refused = {"anywhere", "integer"}  # LogisticRegression takes no NaN in score
    return MlflowModel("logreg-skops", folder, variants(FEATURES), refused, declared=declared)


def hgb_cloudpickle(root: Path) -> MlflowModel:
    """A HistGradientBoosting regressor after a one-hot encoder (cloudpickle)."""
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X = customers(300, 1)
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["plan"]),
        remainder="passthrough",
    )
    model = make_pipeline(encode, HistGradientBoostingRegressor(max_iter=20, random_state=0))
    model.fit(X, spend(X))
    folder = root / "hgb-cloudpickle"
    _save_sklearn(model, folder, "cloudpickle", X, model.predict(X))
    return MlflowModel("hgb-cloudpickle", folder, variants(FEATURES), {"integer"})


def lightgbm_booster(root: Path) -> MlflowModel:
    """A LightGBM Booster (regression) on the numeric columns."""
    import lightgbm
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    X = customers(300, 2)[NUMBERS]
    params = {"objective": "regression", "num_leaves": 8, "verbose": -1, "num_threads": 1}
    booster = lightgbm.train(params, lightgbm.Dataset(X, spend(customers(300, 2))), 15)
    folder = root / "lgb-booster"
    mlflow.lightgbm.save_model(
        booster,
        str(folder),
        signature=infer_signature(X, booster.predict(X)),
        input_example=X.head(3),
        pip_requirements=["lightgbm"],
    )
    return MlflowModel("lgb-booster", folder, variants(NUMBERS), {"integer"})


def xgboost_classifier(root: Path) -> MlflowModel:
    """An XGBClassifier on the numeric columns."""
    import mlflow.xgboost
    import xgboost
    from mlflow.models import infer_signature

    X = customers(300, 3)[NUMBERS]
    model = xgboost.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1)
    model.fit(X, churned(customers(300, 3)))
    folder = root / "xgb-classifier"
    mlflow.xgboost.save_model(
        model,
        str(folder),
        signature=infer_signature(X, model.predict(X)),
        input_example=X.head(3),
        pip_requirements=["xgboost"],
    )
    return MlflowModel("xgb-classifier", folder, variants(NUMBERS), {"integer"})


def _spend_model() -> Any:
    import mlflow.pyfunc

    class Spend(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        """Fills its own missing values, as custom models do."""

        def predict(self, context: Any, model_input: pd.DataFrame) -> np.ndarray:
            frame = model_input
            return (
                frame["amount"].fillna(50.0) * 0.1
                + frame["tenure"] * 0.3
                + (frame["plan"] == "pro") * 2.0
                + frame["score"].fillna(0.0)
            ).to_numpy(dtype="float64")

    return Spend()


def custom_pyfunc(root: Path) -> MlflowModel:
    """A custom ``python_function`` model (cloudpickle): its own code handles NaN."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    X = customers(300, 4)
    model = _spend_model()
    folder = root / "pyfunc-custom"
    mlflow.pyfunc.save_model(
        str(folder),
        python_model=model,
        signature=infer_signature(X, model.predict(None, X)),
        input_example=X.head(3),
        pip_requirements=["pandas"],
    )
    return MlflowModel("pyfunc-custom", folder, variants(FEATURES), {"integer"})


def tensor_hgb(root: Path) -> MlflowModel:
    """A HistGradientBoosting classifier fitted on an array: a (-1, 3) float64 tensor (skops)."""
    import mlflow.sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier

    frame = customers(300, 5)
    X = frame[NUMBERS].to_numpy(dtype="float64")
    model = HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(X, churned(frame))
    folder = root / "tensor-hgb"
    mlflow.sklearn.save_model(
        model,
        str(folder),
        serialization_format="skops",
        skops_trusted_types=[HGB_TREES],
        input_example=X[:3],
        pip_requirements=["scikit-learn"],
    )
    names = [str(i) for i in range(3)]
    rows = {
        name: pd.DataFrame(found.to_numpy(dtype="float64"), columns=names)
        for name, found in variants(NUMBERS).items()
        if name != "integer"  # a float tensor has no integer column
    }
    return MlflowModel("tensor-hgb", folder, rows, tensor=True, declared=[HGB_TREES])


BUILDERS: list[Callable[[Path], MlflowModel]] = [
    logreg_skops,
    hgb_cloudpickle,
    lightgbm_booster,
    xgboost_classifier,
    custom_pyfunc,
    tensor_hgb,
]
