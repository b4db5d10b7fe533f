"""hookgate: a webhook gateway for e-mobility and payment providers."""

__version__ = "0.1.0"
