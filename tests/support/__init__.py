"""What several test files share: fixtures, helpers, fake archives, a local HTTP server, a DVC clone."""
