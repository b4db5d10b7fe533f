"""Alerts: rules over the store and metrics, an evaluator per database, notifiers."""
