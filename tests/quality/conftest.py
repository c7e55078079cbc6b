import pytest


@pytest.fixture(scope="session")
def trained(kc_sales):
    """The shipped design trained on the whole data set, with its random and temporal split evaluation."""
    from kcprice.training import train

    return train(kc_sales)
