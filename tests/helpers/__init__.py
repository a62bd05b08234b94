"""Helpers the tests share (tiny data in real formats, run folders, teacher registries, stand-in runners): imported
from here, never from another test module."""
