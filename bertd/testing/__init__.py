"""Pieces shared by the tests, the benchmarks and `bertd demo`: a tiny BERT, example data, and a
real server process. Never imported by the service itself."""
