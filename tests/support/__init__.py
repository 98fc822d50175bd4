"""Helpers shared by the test suites: real servers, real media, real receivers."""
