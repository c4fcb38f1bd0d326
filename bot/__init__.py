"""The conversation engine, channel adapters, and the ``kaspro`` command line."""
