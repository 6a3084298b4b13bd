"""Corpus embedding (one machine or Ray Data), trial scoring and decision parity.

Imports the leaves and the runtime.
"""
