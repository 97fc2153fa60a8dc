"""bootemu's built-in arches, installed as ``bootemu_arches`` (one subpackage per arch)."""
