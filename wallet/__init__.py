"""The wallet core: customers, tiers and limits, the double-entry ledger, PIN/OTP security.

The only place money moves.
"""
