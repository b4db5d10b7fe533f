"""Sources that hookgate reads from, rather than receives calls from (Kafka topics)."""
