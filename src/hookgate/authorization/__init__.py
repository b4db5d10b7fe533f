"""Charging authorization: decide whether a session start may charge."""
