"""The web server: pages, the dashboard WebSocket, and the Redis fan-out hub."""
