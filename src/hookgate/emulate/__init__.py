"""Faithful provider emulators for hookgate send, tests and benchmarks."""
