"""The verification suite (testinfra): see jincai/verify/__init__.py and docs/verify.md."""
