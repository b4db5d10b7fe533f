"""The records and rules every other part of hookgate speaks in.

This package sits below everything: it imports nothing of hookgate but itself and the
basics (`timeutil`), so providers, processing, delivery, authorization and storage can
share one vocabulary without depending on each other (docs/adr/0018).
"""
