"""Small third-party and FastAPI servers that the load tests run on loopback, with bounded start and stop."""
