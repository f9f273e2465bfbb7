"""Shared core of the HAR service: configuration, database schema and file storage."""
