"""Content fingerprints: the same data gives the same fingerprint, whatever its row index."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """A sha256 over column names, dtypes and cell values (the index is ignored)."""
    import pandas as pd

    digest = hashlib.sha256()
    for name, dtype in frame.dtypes.items():
        digest.update(f"{name}\x1f{dtype}\x1e".encode())
    hashed = pd.util.hash_pandas_object(frame, index=False)
    digest.update(hashed.to_numpy().tobytes())
    return digest.hexdigest()
