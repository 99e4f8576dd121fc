"""A stand-in for the channel systems: realistic raw feedback, some of it malformed or repeated."""
