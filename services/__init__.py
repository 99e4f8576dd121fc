"""The parley stream processors and their shared runtime."""
