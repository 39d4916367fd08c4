"""The WebSocket gateway of protocol v1 and the web page."""
