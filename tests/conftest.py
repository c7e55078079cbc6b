"""Fixtures shared by every tier: the shipped data set and one model trained on it (once per session)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "kc_house_data.csv"


@pytest.fixture(scope="session")
def kc_bytes() -> bytes:
    return DATA.read_bytes()


@pytest.fixture(scope="session")
def kc_sales(kc_bytes):
    from kcprice.dataset import read_sales

    sales, report = read_sales(kc_bytes)
    assert report.ok, report.problems
    return sales


@pytest.fixture(scope="session")
def trained(kc_sales):
    from kcprice.training import train

    return train(kc_sales)


@pytest.fixture
def house() -> dict:
    """A real row of the data set (id 7129300520), as the API takes it."""
    return {
        "bedrooms": 3, "bathrooms": 1.0, "sqft_living": 1180, "sqft_lot": 5650, "floors": 1.0, "waterfront": 0,
        "view": 0, "condition": 3, "grade": 7, "sqft_above": 1180, "sqft_basement": 0, "yr_built": 1955,
        "yr_renovated": 0, "zipcode": 98178, "lat": 47.5112, "long": -122.257, "sqft_living15": 1340,
        "sqft_lot15": 5650, "date": "2014-10-13",
    }  # fmt: skip
