"""The web dashboard's server side: its app on its own TCP listener (server/dashboard.py)."""
