"""Benchmark scripts and the code only they (and the tests that check it) use: NAB scoring and the
synthetic report-stream scenarios. Not part of the installed package."""
