"""websocket-manager: real-time lead intelligence (CRM webhook in, per-tenant feed out)."""
