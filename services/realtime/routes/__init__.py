"""HTTP and WebSocket routes of the websocket-manager."""
