"""Infrastructure shared by every service: settings, logs, metrics, the gRPC
server bootstrap, JetStream topology, signed URLs and the local dev stack.

Business rules never live here; they belong to the service that owns them.
"""
