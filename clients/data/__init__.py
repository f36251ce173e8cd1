"""Data files shipped with the clients (the sample listings for the demo)."""
