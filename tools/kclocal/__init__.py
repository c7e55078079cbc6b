"""Developer tooling around kc-price: the local AWS-compatible stack, demo, benchmarks, size checks.

Never shipped in a Lambda layer.
"""
