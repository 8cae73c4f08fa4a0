"""Intervening, then re-measuring: steering operators on the residual stream, calibration
against a fluency budget, composition toward a target profile, reward-guided decoding, the
`valuescope steer` loop, and export to llama.cpp."""
