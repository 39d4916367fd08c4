"""Adapters to the outside world: event store, embedded servers, providers, settings."""
