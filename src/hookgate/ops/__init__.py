"""Operator actions shared by the admin API and the command line."""
