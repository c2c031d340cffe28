"""The small shared kernel: configuration, event envelope, topics, Kafka wiring, tracing, logging.

Every service imports these instead of carrying its own copy.
"""
