"""Test helpers that run real components: llama.cpp's server and a fault-injecting proxy."""
