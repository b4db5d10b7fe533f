"""The use cases the admin API, the command line and the console share.

Each service is written once against the store, the engine and the providers, knows no
HTTP and no terminal, and raises the domain's errors; every edge maps those to its own
answer (a problem response, a CLI message).
"""
