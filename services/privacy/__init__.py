"""Personal data: find it, mask it with stable tokens, keep the originals only in the vault."""
