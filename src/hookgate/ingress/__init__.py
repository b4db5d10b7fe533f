"""The HTTP edge for provider calls: routing by source, body limits, the problem table."""
