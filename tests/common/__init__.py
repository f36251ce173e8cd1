"""Tests of services.common: auth, users, config, clock, logs."""
