"""Model and dataset references: versions beyond what is stored are a clear error, not a crash."""

from __future__ import annotations

import pytest

from shipyard.core.exceptions import InvalidReferenceError
from shipyard.core.refs import MAX_VERSION, DatasetRef, ModelRef


def test_versions_parse_up_to_the_largest_stored_one() -> None:
    assert ModelRef.parse(f"churn:{MAX_VERSION}").version == MAX_VERSION
    assert DatasetRef.parse("raw/customers:3").version == 3


@pytest.mark.parametrize("digits", [str(MAX_VERSION + 1), "9" * 19, "9" * 5000])
def test_a_version_beyond_the_largest_is_refused(digits: str) -> None:
    with pytest.raises(InvalidReferenceError, match="beyond the largest version number") as caught:
        ModelRef.parse(f"churn:{digits}")
    assert len(str(caught.value)) < 300  # the input is not echoed whole
    with pytest.raises(InvalidReferenceError, match="beyond the largest version number"):
        DatasetRef.parse(f"raw/customers:{digits}")
