"""The worker: produces metric values, stores them, then publishes them."""
