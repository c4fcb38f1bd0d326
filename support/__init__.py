"""The support console (web UI for agents and KYC reviewers)."""
