"""Layer 2: how bytes reach a server: streaming HTTP clients, server processes, the reference server."""
