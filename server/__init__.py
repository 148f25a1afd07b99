"""The web server: pages and JSON endpoints here, the live dashboard socket in server/live/."""
