"""kc-price: King County house-price model, shared by every Lambda function and the CLI."""

__version__ = "0.1.0"
