"""The REST gateway: authenticates, validates and translates HTTP calls to gRPC.

It keeps no database; auth, billing and job services own every record.
"""
