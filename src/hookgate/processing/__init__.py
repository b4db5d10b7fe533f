"""After the answer: events become domain views (projections) and deliveries."""

from __future__ import annotations

from hookgate.processing.projections import project

__all__ = ["project"]
