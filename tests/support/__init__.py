"""Test support: real servers and service processes started on free loopback ports."""
