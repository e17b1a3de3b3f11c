"""Helpers shared by the test suites: the servers they run against."""
