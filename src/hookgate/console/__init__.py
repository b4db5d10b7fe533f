"""The operator console: server-rendered pages at /console over the same queries and
services as the admin API and the command line (docs/console.md, ADR 0024)."""
