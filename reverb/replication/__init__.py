"""The sans-I/O replication core: types, the server's world, the client's replica table."""

__all__: list[str] = []
